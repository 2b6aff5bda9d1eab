"""The customer's flow: verify, create, list, show, update, pause, resume, delete, runs."""

from __future__ import annotations

import builtins
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from ..clock import Clock, to_unix
from ..concurrency import retry_on_conflict
from ..destinations import DestinationFactory, open_destination
from ..errors import ConflictError, InputError, NotFoundError, PreconditionFailed, StaleRecordError
from ..export.formats import DEFAULT_FORMAT
from ..export.plan import column_plan
from ..history import INTEGRATION, Entry, HistoryRepo, history_json
from ..identity import Opening, opening_for
from ..notifications import NotifyConfig, NotifyRequest, new_secret, notify_after, with_secret
from ..runs import RunRepo
from ..secrets import SecretBox
from ..ucd.catalog import Catalog
from ..validation import check_account
from ..windows import activation_instant
from . import changelog
from .bodies import DestinationParams, IntegrationChanges, parse_body, parse_destination
from .model import DestinationConfig, Integration, Status
from .repo import IntegrationRepo
from .selection_check import unseen

T = TypeVar("T")
log = logging.getLogger(__name__)


class Teller(Protocol):
    """The notification outbox's side of a change (exporter/notifications/outbox.py: ChangeTeller)."""

    def rows(self, current: Integration, changed: Integration) -> builtins.list[Any]:
        """The events the change tells, as rows written with it (each has `to_entity()`)."""
        ...

    def send(self, rows: builtins.list[Any]) -> None:
        """Queue the rows once the change landed."""
        ...


class IntegrationService:
    def __init__(
        self,
        repo: IntegrationRepo,
        runs: RunRepo,
        history: HistoryRepo,
        secrets: SecretBox,
        clock: Clock,
        open_destination: DestinationFactory = open_destination,
        catalog: Callable[[str], Catalog] | None = None,
        opening: Callable[[str, str], Opening] | None = None,
    ):
        self.repo = repo
        self.runs_repo = runs
        self.history_repo = history
        self.secrets = secrets
        self.clock = clock
        self.open_destination = open_destination
        self.teller: Teller | None = None  # the events a change tells (exporter/notifications/outbox.py)
        self.opening = opening  # (account, session) -> on whose behalf a destination is opened (keyless ones need it)
        self.catalog = (
            catalog  # the UCD's catalog of an account (exporter.ucd): what its selections are checked against
        )

    # ------------------------------------------------------------- verification

    def verify(self, account: str, body: object) -> dict[str, Any]:
        """Verify authentication for a destination body (or an integration body holding one)."""
        check_account(account)
        if isinstance(body, dict) and "destination" in body and "type" not in body:
            body = body["destination"]
        return self._verified(account, parse_destination(body, partial=False).complete(), seal=False)[1]

    def _verified(
        self, account: str, destination: DestinationParams, seal: bool = True
    ) -> tuple[DestinationConfig, dict[str, Any]]:
        """Verify a destination (test file written, deletion tried); return it sealed for storage, and the answer."""
        # Sealed first: without a usable EXPORT_SECRET_KEY a create or update fails before writing a test file.
        sealed_secret = self.secrets.seal(destination.secret) if seal else ""
        with self._opening(account):
            client = self.open_destination(
                destination.type, destination.secret, destination.container, destination.prefix
            )
            verification = client.verify(f".export-verify-{to_unix(self.clock.now())}-{uuid.uuid4().hex[:8]}.txt")
        info = client.describe()
        sealed = DestinationConfig(
            type=destination.type,
            container=info.container,
            prefix=destination.prefix,
            sealed_secret=sealed_secret,
            masked=info.masked,
        )
        return sealed, verification.to_json()

    def _opening(self, account: str) -> contextlib.AbstractContextManager[object]:
        """A verification's destination is opened for the account, in a session named `verify`."""
        return opening_for(self.opening(account, "verify")) if self.opening else contextlib.nullcontext()

    # ------------------------------------------------------------- create / read

    def create(self, account: str, body: object, integration_id: str | None = None) -> dict[str, Any]:
        """Validate, verify the destination, then store (refused whole on any failure).

        `integration_id` (12 hex digits) is for a caller that must create at most once, such as the console's
        wizard: the id is derived from its draft, so a repeated create is refused because the first exists.
        """
        check_account(account)
        changes = parse_body(body, partial=False)
        events, attributes = _given(changes.events, "events"), _given(changes.attributes, "attributes")
        column_plan(events, attributes)
        destination, verification = self._verified(account, _given(changes.destination, "destination").complete())
        notify, notify_secret = self._notify(None, changes.notify)
        now = self.clock.now()
        integration = Integration(
            account=account,
            id=integration_id or uuid.uuid4().hex[:12],
            name=_given(changes.name, "name"),
            destination=destination,
            events=events,
            attributes=attributes,
            frequency_hours=_given(changes.frequency_hours, "frequency_hours"),
            status=_given(changes.status, "status"),
            format=changes.format or DEFAULT_FORMAT.value,
            manifest=bool(changes.manifest),
            notify=notify,
            created_at=now,
            updated_at=now,
            activated_at=activation_instant(now) if changes.status == Status.ACTIVE else None,
        )
        with self.recorded(None, integration, verified=True):
            stored = self.repo.create(integration)
        log.info("integration created", extra={"account": account, "integration_id": stored.id})
        return with_secret(self._answer(stored, verification=verification), notify_secret)

    def list(self, account: str) -> dict[str, Any]:
        check_account(account)
        return {"integrations": [{**i.to_json(), "etag": i.etag} for i in self.repo.list(account)]}

    def show(self, account: str, integration_id: str) -> dict[str, Any]:
        check_account(account)
        return self._answer(self.repo.get(account, integration_id))

    def runs(self, account: str, integration_id: str, limit: int = 1000) -> dict[str, Any]:
        check_account(account)
        self.repo.get(account, integration_id)
        return {"runs": [r.to_json() for r in self.runs_repo.list(account, integration_id, limit)]}

    def history(self, account: str, integration_id: str, limit: int = 100) -> dict[str, Any]:
        """Who changed what and when, newest first; an integration that is not the account's is not found."""
        check_account(account)
        self.repo.get(account, integration_id)
        entries = self.history_repo.list(
            account, self.versions(account), limit, subject=INTEGRATION, subject_id=integration_id
        )
        return history_json(entries)

    def versions(self, account: str) -> Callable[[str, str], str]:
        """The stored version of an account's integrations (history resolves unconfirmed entries against it)."""

        def version(subject: str, integration_id: str) -> str:
            try:
                return changelog.version(self.repo.get(account, integration_id))
            except NotFoundError:
                return changelog.version(None)

        return version

    @contextmanager
    def recorded(
        self, old: Integration | None, new: Integration | None, verified: bool = False, who: str | None = None
    ) -> Iterator[None]:
        """Around the write of a change: its history entry intended before, confirmed once the write returned."""
        entry = self._intend(old, new, verified, who)
        yield
        self._confirm(entry)

    def _intend(
        self, old: Integration | None, new: Integration | None, verified: bool = False, who: str | None = None
    ) -> Entry | None:
        """Record a change before it is made (exporter/history.py says why); None when it changes nothing."""
        subject = new or old
        before, after = changelog.version(old), changelog.version(new)
        if subject is None or before == after:  # the worker's own moves (windows, leases) end here, cheaply
            return None
        found = changelog.changes(old, new, self.secrets.open) if new is not None else ()
        if new is not None and not found and not verified:
            return None
        action = changelog.action(old, new, found)
        return self.history_repo.intend(
            subject.account, INTEGRATION, subject.id, action, found, before, after, verified=verified, who=who
        )

    def _answer(self, integration: Integration, **extra: object) -> dict[str, Any]:
        body = integration.to_json()
        body["etag"] = integration.etag
        warnings = self._warnings(integration)
        if warnings:
            body["warnings"] = warnings
        body.update(extra)
        return body

    def _warnings(self, integration: Integration) -> builtins.list[str]:  # `list` is a method here
        return [] if self.catalog is None else unseen(integration, self.catalog(integration.account))

    # ------------------------------------------------------------- changes

    def update(self, account: str, integration_id: str, body: object, if_match: str | None = None) -> dict[str, Any]:
        """Apply a partial change; credentials (any destination change) are verified first."""
        check_account(account)
        changes = parse_body(body, partial=True)
        current = self.repo.get(account, integration_id)
        destination, verification = None, None
        if changes.destination is not None:
            destination, verification = self._verified(
                account, changes.destination.filled_from(current.destination, self.secrets.open)
            )
        extra = {"verification": verification} if verification else {}
        notify, notify_secret = self._notify(current.notify, changes.notify)
        written = self._write(
            current, lambda c: self._apply(c, changes, destination, notify), if_match, verified=bool(verification)
        )
        return with_secret(self._answer(written, **extra), notify_secret)

    def _tell(self, rows: builtins.list[Any]) -> None:
        if self.teller is not None and rows:
            self.teller.send(rows)

    def _notify(
        self, current: NotifyConfig | None, request: NotifyRequest | None
    ) -> tuple[NotifyConfig | None, str | None]:
        return notify_after(current, request, self.secrets.seal)

    def rotate_notify_secret(self, account: str, integration_id: str) -> dict[str, Any]:
        """A new signing secret for the integration's notifications, shown once in this answer."""
        check_account(account)
        current = self.repo.get(account, integration_id)
        if current.notify is None:
            raise ConflictError("the integration has no notification url; set notify first", field="notify")
        secret = new_secret()
        sealed = self.secrets.seal(secret)

        def rotate(c: Integration) -> Integration:
            if c.notify is None:
                raise ConflictError("the integration has no notification url; set notify first", field="notify")
            return c.with_changes(
                notify=NotifyConfig(c.notify.url, c.notify.events, sealed), updated_at=self.clock.now()
            )

        return with_secret(self._answer(self._write(current, rotate, None)), secret)

    def _apply(
        self,
        current: Integration,
        changes: IntegrationChanges,
        destination: DestinationConfig | None,
        notify: NotifyConfig | None = None,
    ) -> Integration:
        now = self.clock.now()
        events = changes.events if changes.events is not None else current.events
        attributes = changes.attributes if changes.attributes is not None else current.attributes
        column_plan(events, attributes)
        status = current.status
        last_error = current.last_error
        if changes.status is not None:
            if changes.status == Status.ACTIVE and current.status.stopped and destination is None:
                raise ConflictError(
                    f"the integration stopped with a {current.status.replace('_', ' ')}; "
                    "update its destination credentials (they are verified) to resume",
                    field="status",
                )
            status = changes.status
        elif destination is not None and current.status.stopped:
            status = Status.ACTIVE  # verified credentials end a credential or destination error
        if status == Status.ACTIVE and current.status != Status.ACTIVE:
            last_error = None
        return current.with_changes(
            name=changes.name or current.name,
            destination=destination or current.destination,
            events=events,
            attributes=attributes,
            frequency_hours=changes.frequency_hours or current.frequency_hours,
            format=changes.format or current.format,  # like the frequency: from last_success_end on
            manifest=current.manifest if changes.manifest is None else changes.manifest,
            notify=current.notify if changes.notify is None else notify,
            status=status,
            last_error=last_error,
            activated_at=current.activated_at or (activation_instant(now) if status == Status.ACTIVE else None),
            updated_at=now,
        )

    def _write(
        self,
        current: Integration,
        change: Callable[[Integration], Integration],
        if_match: str | None,
        verified: bool = False,
    ) -> Integration:
        """Conditional write; a race with the worker's own state moves is retried, a race with another edit is not.

        Each attempt's change is recorded in the history before it is written and confirmed after.
        """
        if if_match is not None and if_match.strip() == "*":
            if_match = None  # HTTP: `*` matches any current version, and `current` exists (it was just read)
        if if_match is not None and if_match != current.etag:
            raise PreconditionFailed("the integration changed since that ETag was read", field="If-Match")
        attempted: list[Integration] = []
        intended: list[Entry | None] = []
        told: list[Any] = []  # the events the change tells (a recovery), written with it: the outbox's rows

        def attempt(integration: Integration) -> Integration:
            if attempted and integration.same_record(attempted[-1]):
                self._confirm(intended[-1])
                self._tell(told)
                return integration  # our own write landed and only its answer was lost
            attempted.append(
                change(integration)
            )  # a refusal of the change itself (ConflictError) is not a race, not retried
            intended.append(self._intend(integration, attempted[-1], verified))
            told[:] = self.teller.rows(integration, attempted[-1]) if self.teller else ()
            written = self.repo.replace(attempted[-1], along=[row.to_entity() for row in told])
            self._confirm(intended[-1])
            self._tell(told)
            return written

        def reread(stale: Integration) -> Integration:
            fresh = self.repo.get(stale.account, stale.id)
            if fresh.same_record(attempted[-1]):
                return fresh
            if if_match is not None:
                raise PreconditionFailed("the integration changed since that ETag was read", field="If-Match")
            if fresh.config() != stale.config():
                raise ConflictError(
                    f"integration {stale.id!r} was changed concurrently; read it again and retry", field="id"
                )
            return fresh

        return retry_on_conflict(
            current, attempt, reread, conflicts=(StaleRecordError,), what="the integration", attempts=5
        )

    def pause(self, account: str, integration_id: str) -> dict[str, Any]:
        check_account(account)
        current = self.repo.get(account, integration_id)
        if current.status.stopped:
            raise ConflictError(
                f"the integration is stopped by a {current.status.replace('_', ' ')}; fix its credentials first",
                field="status",
            )
        if current.status == Status.PAUSED:
            return self._answer(current)
        return self._answer(
            self._write(current, lambda c: c.with_changes(status=Status.PAUSED, updated_at=self.clock.now()), None)
        )

    def resume(self, account: str, integration_id: str) -> dict[str, Any]:
        """Back to active; the next runs catch up from last_success_end (never re-export, never skip)."""
        check_account(account)
        current = self.repo.get(account, integration_id)
        if current.status == Status.ACTIVE:
            return self._answer(current)
        return self.update(account, integration_id, {"status": Status.ACTIVE.value})

    def delete(self, account: str, integration_id: str) -> dict[str, Any]:
        check_account(account)
        current = self.repo.get(account, integration_id)
        with self.recorded(current, None):
            self.repo.delete(current)
        return {"id": integration_id, "deleted": True}

    def _confirm(self, entry: Entry | None) -> None:
        if entry is not None:
            self.history_repo.confirm(entry)


def _given(value: T | None, field: str) -> T:
    """A field a create body holds: parse_body refused its absence already; this tells the type checker."""
    if value is None:
        raise InputError("is required", field=field)
    return value
