"""Changes the worker makes to an integration's delivery state, re-read and retried on a lost race."""
from __future__ import annotations

from typing import Any, Callable

from ..context import Context
from ..errors import ConflictError, NotFoundError, TransientError
from ..integrations.model import Integration


def modify(ctx: Context, integration: Integration, *, unless: Callable[[Integration], bool] | None = None,
           **changes: Any) -> Integration | None:
    """Apply worker-owned changes with ETag retries; None if the integration is gone or `unless(fresh)` holds."""
    for _ in range(10):
        if unless is not None and unless(integration):
            return None
        try:
            return ctx.repo.replace(integration.with_changes(**changes))
        except ConflictError:
            try:
                integration = ctx.repo.get(integration.account, integration.id)
            except NotFoundError:
                return None
        except NotFoundError:
            return None
    raise TransientError("the integration keeps changing; the job will be retried")
