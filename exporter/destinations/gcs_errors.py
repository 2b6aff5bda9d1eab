"""What a Cloud Storage failure means, in our words: the one error map of the GCS destination.

Known failures become CredentialError / DestinationError / TransientError with sentences of ours, chosen
by the HTTP status class and, for the token endpoint, by OAuth's documented error codes; nothing else a
server sent (its body, the status itself, an exception's class name) reaches the customer. At
verification every answer that is not Google's own kind (no server, a server speaking something else, an
unknown refusal) gets one sentence per address, so the answer says nothing about what listens there.
Anything else (a TypeError in our code) is not mapped: it passes with its traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

from .. import egress
from ..errors import CredentialError, DestinationError, ExporterError, TransientError
from .common import REDIRECTS, TRANSIENT_STATUSES, ErrorMap, refused_answer

# RFC 6749's token endpoint refusals: the key itself was refused.
OAUTH_REFUSALS = {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_scope"}
KEY_REFUSED = "Google refused the service account key: it is wrong, deleted or disabled (the token request was refused)"


class PlatformTokenFailed(Exception):
    """KEYLESS HOOK (issue 24): the platform's own token could not be had (keyless_gcs.py tags each step).

    `impersonate` is the customer's service account when the impersonation failed (None: the platform's own
    exchange); `transient` when the token service was unreachable or said to try again. No server text.
    """

    def __init__(self, platform_account: str, impersonate: str | None, transient: bool):
        super().__init__(impersonate or platform_account)
        self.platform_account, self.impersonate, self.transient = platform_account, impersonate, transient


def platform_token_failure(exc: PlatformTokenFailed) -> ExporterError:
    """A keyless token refused (or out of reach) in words saying what the customer must grant."""
    if exc.transient:
        return TransientError("Google's token service is unavailable or out of reach; try again later")
    who = exc.platform_account or "the platform's service account (see integrations identity)"
    if exc.impersonate:
        return CredentialError(
            f"Google refused to let {who} impersonate {exc.impersonate}: grant it "
            "roles/iam.serviceAccountTokenCreator on that service account"
        )
    return CredentialError(f"Google refused the platform's identity {who} (the token exchange was refused)")


class UnusableTokenAnswer(Exception):
    """The token endpoint answered 200 with something that is not a token (google-auth would fail on it)."""


def token_answer_problem(status: int, body: bytes) -> bool:
    """A 200 from a token endpoint must be a JSON object holding an access token."""
    if status != 200:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return True
    return not isinstance(data, dict) or not isinstance(data.get("access_token"), str)


def _oauth_refusal(exc: BaseException) -> bool:
    data = exc.args[1] if len(exc.args) > 1 else None
    return isinstance(data, dict) and data.get("error") in OAUTH_REFUSALS


@dataclass(frozen=True)
class GcsErrors(ErrorMap):
    """The error map of one bucket: `endpoint_url` None is Google itself."""

    bucket: str
    endpoint_url: str | None

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or "https://storage.googleapis.com"

    def unusable(self) -> DestinationError:
        """Verification's one answer for whatever is at the endpoint when it is not Cloud Storage answering."""
        return DestinationError(
            f"could not reach Cloud Storage at {self.endpoint}, or it refused the request: "
            "check the endpoint URL and the bucket name"
        )

    @staticmethod
    def no_token() -> DestinationError:
        """The one answer for whatever is at the key's token_uri when it is not a token endpoint answering."""
        return DestinationError(
            "could not reach the token_uri of the service account key, or it did not answer with a token: "
            "check the key's token_uri"
        )

    def known(self, exc: BaseException, operation: str | None, verifying: bool) -> ExporterError | None:
        """Our error for a Cloud Storage, token endpoint or transport failure; None for anything else."""
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud.storage.exceptions import InvalidResponse

        if isinstance(exc, PlatformTokenFailed):  # KEYLESS HOOK (issue 24): no key, the platform's identity
            return platform_token_failure(exc)
        if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
            return self.classify(
                exc.cause, operation, verifying=verifying
            )  # the client's retries ran out: what failed last
        if isinstance(exc, auth_exceptions.RefreshError):
            if _oauth_refusal(exc):
                return CredentialError(KEY_REFUSED)
            if getattr(exc, "retryable", False):
                return TransientError("the service account's token endpoint is unavailable; try again later")
            return self.no_token()
        if isinstance(exc, UnusableTokenAnswer):
            return self.no_token()
        if isinstance(exc, auth_exceptions.TransportError):
            return self.no_token() if verifying else TransientError("could not reach the service account's token_uri")
        if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.code is not None:
            return self.status(int(exc.code), operation, verifying=verifying)
        if isinstance(exc, InvalidResponse) and getattr(exc.response, "status_code", None):
            return self.status(int(exc.response.status_code), operation, verifying=verifying)
        if isinstance(
            exc, (requests.RequestException, api_exceptions.RetryError, InvalidResponse, json.JSONDecodeError)
        ):
            # No answer, or one that does not parse as Cloud Storage's (a JSONDecodeError is the server's, not ours).
            return (
                self.unusable() if verifying else TransientError("could not reach Cloud Storage, or it did not answer")
            )
        return None

    def status(self, status: int, operation: str | None = None, *, verifying: bool = False) -> ExporterError:
        """An HTTP status from Cloud Storage, in words a customer can act on."""
        if status in REDIRECTS and self.endpoint_url and not egress.trusted_url(self.endpoint_url):
            return refused_answer(egress.EgressRefused("destination.endpoint_url", egress.REASON_REDIRECT), verifying)
        if status == 401:
            return CredentialError("Cloud Storage refused the service account's access token")
        if status == 403:
            if operation == "write":
                return CredentialError(
                    f"the service account may not write to bucket {self.bucket!r} "
                    "(it needs storage.objects.create, e.g. the Storage Object Creator role)"
                )
            if operation == "delete":
                return CredentialError(
                    f"the service account may not delete from bucket {self.bucket!r} (storage.objects.delete)"
                )
            return CredentialError(f"the service account lacks a permission on bucket {self.bucket!r}")
        if status in (404, 410) and operation == "chunk":
            return TransientError("the resumable upload session expired or was cancelled; the file is uploaded again")
        if status == 404:
            return DestinationError(f"bucket {self.bucket!r} does not exist")
        if status in TRANSIENT_STATUSES or status >= 500:
            return TransientError("Cloud Storage is unavailable or throttling; try again later")
        if verifying:
            return self.unusable()
        return DestinationError(
            f"Cloud Storage refused a request for bucket {self.bucket!r}: check the bucket and its settings"
        )
