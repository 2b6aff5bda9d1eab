"""The GCS destination's HTTP: an authorized session pinned by the egress policy, and verification's retries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import egress, pinning
from .gcs_errors import UnusableTokenAnswer, token_answer_problem

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.auth.credentials import Credentials
    from google.auth.transport import Response
    from google.auth.transport.requests import AuthorizedSession


def verify_retry(*urls: str | None) -> Retry | None:
    """Verification answers a waiting customer: a few seconds of retries with Google itself; none when an address
    is a customer's, whose answer (or silence) comes at once, so the time taken says nothing of what is there."""
    if any(url and not egress.trusted_url(url) for url in urls):
        return None
    # google-cloud-storage is imported where it is used: the app's cold start does not pay for it.
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(4).with_delay(initial=0.5, maximum=2)


def authorized_session(google: Credentials, guard: egress.Guard, keyless: bool = False) -> AuthorizedSession:
    """An authorized session whose every connection (token requests too) is pinned by the egress policy.

    KEYLESS HOOK (issue 24): without a key, tokens come from the operator's endpoints (Google's STS and IAM
    Credentials, the managed identity's endpoint on a link-local address), none a customer's: not pinned.
    """
    from google.auth.transport.requests import AuthorizedSession, Request

    class TokenRequest(Request):
        """A token answer that is not a token is refused here (google-auth would fail on it with a TypeError)."""

        def __call__(self, *args: object, **kwargs: object) -> Response:
            response = super().__call__(*args, **kwargs)
            if token_answer_problem(response.status, response.data):
                raise UnusableTokenAnswer()
            return response

    class Session(pinning.NoRedirects, AuthorizedSession):
        pass

    token_request = Request() if keyless else TokenRequest(pinning.pinned_session(guard))
    return pinning.pin_session(Session(google, auth_request=token_request), guard)
