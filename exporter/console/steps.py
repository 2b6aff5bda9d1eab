"""What the wizard's steps share: the drafts of a visit, a step's URL, the form's values, the account's free
destination slots, and `Again` (a step's page shown again with a message at its top).

The steps (authentication.py, wizard.py's Configure, launch.py) answer a `Response` or an `Again`; the
wizard renders an `Again`, so no step module needs the wizard's page code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..integrations.repo import MAX_DESTINATIONS_PER_ACCOUNT
from .drafts import Draft, DraftRepo
from .web import Response, account_url

if TYPE_CHECKING:  # the dispatcher imports the step modules
    from .app import Visit

LIMIT_REACHED = (
    f"All {MAX_DESTINATIONS_PER_ACCOUNT} destinations of this account are in use (Azure Blob, Amazon S3 and "
    "Google Cloud Storage together). Delete one before adding another."
)


@dataclass(frozen=True)
class Again:
    """Show the step's page again: with this status, and a detailed error (`alert`) or a confirmation (`notice`)."""

    status: int = 200
    alert: str = ""
    notice: str = ""


StepAnswer = Response | Again


def drafts(visit: Visit) -> DraftRepo:
    return DraftRepo(visit.ctx.storage, visit.ctx.clock)


def step_url(draft: Draft, step: str) -> str:
    return account_url(draft.account, "wizard", draft.id, step)


def form_value(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def limit_reached(visit: Visit) -> bool:
    """Every destination slot of the account is taken: checked before anything is verified or stored.

    The repository's slots decide in the end (two tabs may race for the last one); this check spares the
    customer a verification (a test file written) that could only lead to the limit.
    """
    return len(visit.ctx.repo.list(visit.account)) >= MAX_DESTINATIONS_PER_ACCOUNT
