"""What an S3 failure means, in our words: the one error map of the S3 destination.

Known failures become CredentialError / DestinationError / TransientError with sentences of ours, chosen
by S3's documented error codes and the HTTP status class; nothing else the server sent (its body, an
unknown code, the status itself, an exception's class name) reaches the customer. At verification every
answer that is not S3's own (no server, a server speaking something else, an unknown refusal) gets one
sentence, so the answer says nothing about what listens at a customer's address. Anything that is not
a failure of S3 or of the way to it (a TypeError in our code) is not mapped: it passes with its traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import egress
from ..errors import ConfigurationError, CredentialError, DestinationError, ExporterError, InternalError, TransientError
from .aws_platform import PlatformSignInFailed
from .common import REDIRECTS, TRANSIENT_STATUSES, ErrorMap, refused_answer

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
CODE_RE = re.compile(r"^[A-Za-z0-9.]{1,64}$")

BAD_KEY = {
    "InvalidAccessKeyId": "S3 does not know the access key id: it is wrong, deleted or deactivated",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidToken": "the credentials are invalid or expired",
    "ExpiredToken": "the credentials have expired",
    "TokenRefreshRequired": "the credentials have expired",
    "AccountProblem": "the AWS account behind the credentials cannot be used",
    "AllAccessDisabled": "all access to the bucket is disabled",
}
PERMISSION = {"AccessDenied", "AccessDeniedException"}
WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "NoSuchUpload",
}
# KEYLESS HOOK (issue 24): STS's answers to AssumeRole (matched, never shown).
STS_REFUSED = {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch"}
STS_TRANSIENT = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure"}
PERMISSION_FOR = {"write": "write to", "delete": "delete from"}
ACTION_FOR = {"write": "s3:PutObject", "delete": "s3:DeleteObject"}


def error_code(exc: ClientError) -> tuple[int | None, str]:
    """The HTTP status and the S3 error code (kept only if it looks like one; it is matched, never shown)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(exc.response.get("Error", {}).get("Code") or "")
    # Without an S3 error body botocore names the status as the code: that is no code.
    return status, code if CODE_RE.fullmatch(code) and not code.isdigit() else ""


class RoleNotAssumed(Exception):
    """KEYLESS HOOK (issue 24): STS did not give the platform a customer's role (keyless_s3.assume_role).

    It carries what the customer's trust policy must name (none of it is the server's text); the error map
    words it (`role_refusal`), and `cause` (STS's failure) is only matched.
    """

    def __init__(self, cause: BaseException, role_arn: str, external_id: str, principal: str):
        super().__init__(role_arn)
        self.cause, self.role_arn, self.external_id, self.principal = cause, role_arn, external_id, principal


def role_refusal(exc: RoleNotAssumed) -> ExporterError | None:
    """An AssumeRole failure in words the customer can act on: what their role's trust policy must allow."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    cause = exc.cause
    if isinstance(cause, PlatformSignInFailed):
        return platform_sign_in_failure(cause.cause)
    if isinstance(cause, NoCredentialsError):  # the operator's to fix: no customer's integration is at fault
        return ConfigurationError(
            "names a principal, but boto3's default chain found no AWS credentials for it",
            field="EXPORT_AWS_PRINCIPAL_ARN",
        )
    if isinstance(cause, ClientError):
        status, code = error_code(cause)
        if code in STS_TRANSIENT or status in TRANSIENT_STATUSES or (status or 0) >= 500:
            return TransientError("AWS STS is unavailable or throttling; try again later")
        who = exc.principal or "the platform's AWS principal (see integrations identity)"
        if code in STS_REFUSED or status in (401, 403):
            return CredentialError(
                f"AWS refused to let the platform assume role {exc.role_arn!r}: its trust policy must allow "
                f"{who} to call sts:AssumeRole on condition sts:ExternalId = {exc.external_id!r}, and the role must exist"
            )
        return CredentialError(
            f"AWS STS would not let the platform assume role {exc.role_arn!r}: check the role ARN, and that its "
            f"trust policy allows {who} on condition sts:ExternalId = {exc.external_id!r}"
        )
    if isinstance(cause, BotoCoreError):
        return TransientError("could not reach AWS STS; try again later")
    return None  # not STS's failure: a bug of ours, passed on with its traceback


def platform_sign_in_failure(cause: BaseException) -> ExporterError | None:
    """The platform could not become its own AWS principal: the operator's to fix (no customer's trust policy is
    at fault, so no integration stops), or the weather."""
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(cause, ClientError):
        status, code = error_code(cause)
        if code in STS_TRANSIENT or status in TRANSIENT_STATUSES or (status or 0) >= 500:
            return TransientError("AWS STS is unavailable or throttling; try again later")
        return ConfigurationError(
            "could not be signed in to with the app's managed identity: AWS must trust Entra ID as an OIDC "
            "provider for api://AzureADTokenExchange and the role must trust the identity (infra/README.md)",
            field="EXPORT_AWS_PRINCIPAL_ARN",
        )
    if isinstance(cause, ClientAuthenticationError):
        return ConfigurationError(
            "is managed-identity, but the app's managed identity gave no token (is it assigned to the app?)",
            field="EXPORT_AWS_WEB_IDENTITY",
        )
    if isinstance(cause, (BotoCoreError, ServiceRequestError)):
        return TransientError("could not sign in to AWS as the platform; try again later")
    return None  # a bug of ours, passed on with its traceback


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None


def is_permission_refusal(exc: BaseException) -> bool:
    """Valid credentials refused one action (an S3 AccessDenied, or a bare 403)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status, code = error_code(exc)
    return code in PERMISSION or status == 403


def cannot_list(exc: BaseException) -> bool:
    """ListParts refused: the upload is gone (aborted, completed, expired) or the key may not list parts."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status, code = error_code(exc)
    return code == "NoSuchUpload" or code in PERMISSION or status in (403, 404)


def _network_failure(exc: BaseException) -> bool:
    """No answer, or none that parses as S3's: the way to the endpoint failed, not our code."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError
    from botocore.parsers import ResponseParserError

    return isinstance(exc, (HTTPClientError, BotoConnectionError, IncompleteReadError, ResponseParserError))


@dataclass(frozen=True)
class S3Errors(ErrorMap):
    """The error map of one bucket: `endpoint_url` None is AWS itself."""

    bucket: str
    region: str
    endpoint_url: str | None

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"

    @property
    def from_aws(self) -> bool:
        """Answers come from AWS itself, so what they name (a bucket's region) may be repeated."""
        return self.endpoint_url is None or egress.trusted_url(self.endpoint_url)

    def known(self, exc: BaseException, operation: str | None, verifying: bool) -> ExporterError | None:
        """Our error for an S3 failure; None for anything else (a bug of ours, re-raised by `mapped`)."""
        from botocore.exceptions import ClientError

        if isinstance(exc, RoleNotAssumed):  # KEYLESS HOOK (issue 24): S3 by role
            return role_refusal(exc)
        if isinstance(exc, ClientError):
            return self._answer(exc, operation, verifying)
        if _network_failure(exc):
            return (
                self.unusable()
                if verifying
                else TransientError("could not reach the S3 endpoint, or it did not answer")
            )
        return None

    def unusable(self) -> DestinationError:
        """Verification's one answer for whatever is at the endpoint when it is not S3 answering as S3 does."""
        return DestinationError(
            f"could not reach S3 at {self.endpoint}, or it refused the request: "
            "check the endpoint URL, the region and the bucket name"
        )

    def _answer(self, exc: ClientError, operation: str | None, verifying: bool) -> ExporterError:
        status, code = error_code(exc)
        if status in REDIRECTS and not self.from_aws:
            return refused_answer(egress.EgressRefused("destination.endpoint_url", egress.REASON_REDIRECT), verifying)
        if code in BAD_KEY:
            return CredentialError(BAD_KEY[code])
        if code in PERMISSION or (status == 403 and not code):
            if operation in PERMISSION_FOR:
                return CredentialError(
                    f"the credentials may not {PERMISSION_FOR[operation]} bucket {self.bucket!r} "
                    f"(no {ACTION_FOR[operation]} permission, or the bucket belongs to another account)"
                )
            return CredentialError(f"the credentials lack a permission on bucket {self.bucket!r}")
        if code == "NoSuchBucket":
            return DestinationError(f"bucket {self.bucket!r} does not exist")
        if code in WRONG_REGION or status in REDIRECTS:
            actual = self._bucket_region(exc)
            where = (
                f"in region {actual!r}, not {self.region!r}: set region to {actual!r}"
                if actual
                else f"not in region {self.region!r}: check the region"
            )
            return DestinationError(f"bucket {self.bucket!r} is {where}")
        if code == "EntityTooSmall":
            return InternalError("a part of the multipart upload was smaller than 5 MiB")
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES or (status or 0) >= 500:
            return TransientError("S3 is unavailable or throttling; try again later")
        if verifying:
            return self.unusable()
        if status in (401, 403):
            return CredentialError("S3 refused the credentials")
        return DestinationError(f"S3 refused a request for bucket {self.bucket!r}: check the bucket and its settings")

    def _bucket_region(self, exc: ClientError) -> str | None:
        """The bucket's region as AWS names it (never what another server says)."""
        if not self.from_aws:
            return None
        region = exc.response.get("Error", {}).get("Region") or (
            exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        )
        return region if isinstance(region, str) and REGION_RE.fullmatch(region) else None
