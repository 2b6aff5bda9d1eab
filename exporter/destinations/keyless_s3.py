"""S3 by role: the customer's IAM role, assumed with the account's external id (no customer key).

The customer creates a role whose trust policy lets the platform's principal assume it on condition
`sts:ExternalId` = the account's external id (exporter/identity.py), and whose policy allows writing
to the bucket. The platform's principal is boto3's default credential chain, or in Azure the app's
managed identity federated into the platform's AWS role (aws_platform.py); the STS endpoint is the
operator's EXPORT_AWS_STS_ENDPOINT.

Session credentials live in this process's memory only, reused until shortly before they expire:
one AssumeRole per role, account and session (an integration, or `verify`) per hour, not per export.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import InputError
from ..identity import Opening, current_opening
from .aws_platform import platform_session
from .s3_errors import RoleNotAssumed

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
SESSION_SECONDS = 3600  # what is asked; AWS grants up to the role's maximum session duration
REFRESH_BEFORE_SECONDS = 900  # a client opened now may run for a whole export run (minutes) on these
SESSION_NAME_RE = re.compile(r"[^\w+=,.@-]")
STS_OPTIONS = {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 30}


def check_role_arn(value: object, field: str = "destination.role_arn") -> str:
    """An IAM role's ARN, arn:aws:iam::123456789012:role/name (a path is allowed)."""
    if not isinstance(value, str) or not ROLE_ARN_RE.fullmatch(value):
        raise InputError("must be an IAM role ARN such as arn:aws:iam::123456789012:role/event-export", field=field)
    return value


def session_name(session: str) -> str:
    """STS's RoleSessionName (2-64 of [\\w+=,.@-]): names the integration, or `verify`, in the customer's CloudTrail."""
    return SESSION_NAME_RE.sub("-", f"event-export-{session}")[:64]


@dataclass(frozen=True)
class SessionCredentials:
    """An assumed role's temporary credentials (never stored, never shown)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expires_at: float  # Unix seconds


@dataclass
class SessionCache:
    """Assumed-role credentials by role, account and session, reused until REFRESH_BEFORE_SECONDS before expiry."""

    now: Callable[[], float] = time.time
    assume: Callable[[Opening, str, str], SessionCredentials] | None = None  # None: STS (tests count calls)
    _held: dict[tuple[str, str, str], SessionCredentials] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def credentials(self, opening: Opening, role_arn: str, region: str) -> SessionCredentials:
        key = (role_arn, opening.account, opening.session)
        with self._lock:
            held = self._held.get(key)
            if held is not None and held.expires_at - REFRESH_BEFORE_SECONDS > self.now():
                return held
        # Outside the lock: one slow STS answer does not hold up other roles (two racing asks both succeed).
        fresh = (self.assume or assume_role)(opening, role_arn, region)
        with self._lock:
            self._held[key] = fresh
            if len(self._held) > 4096:  # a bound, not a policy: drop what has expired
                self._held = {k: v for k, v in self._held.items() if v.expires_at > self.now()}
        return fresh


SESSIONS = SessionCache()


def role_credentials(role_arn: str, region: str) -> SessionCredentials:
    """The role's session credentials for the destination being opened (exporter.identity.opening_for)."""
    opening = current_opening("an S3 destination with a role")
    if not opening.platform.aws_principal_arn:  # and boto3's chain is not even asked (it may probe a metadata server)
        raise InputError(
            "cannot be assumed: this service has no AWS identity of its own to trust (keyless access is not set up)",
            field="destination.role_arn",
        )
    return SESSIONS.credentials(opening, role_arn, region)


def assume_role(opening: Opening, role_arn: str, region: str) -> SessionCredentials:
    """STS AssumeRole as the platform's principal (aws_platform.py), with the account's external id."""
    from botocore.config import Config

    platform = opening.platform
    external_id = opening.external_id
    try:
        sts = platform_session(platform).client(
            "sts",
            region_name=region,
            endpoint_url=platform.aws_sts_endpoint or None,
            config=Config(**STS_OPTIONS, ignore_configured_endpoint_urls=True, user_agent_extra="event-export"),
        )
        answer = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=session_name(opening.session),
            ExternalId=external_id,
            DurationSeconds=SESSION_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 - worded by the S3 error map (s3_errors.role_refusal), never with SDK text
        raise RoleNotAssumed(exc, role_arn, external_id, platform.aws_principal_arn) from None
    given = answer["Credentials"]
    return SessionCredentials(
        given["AccessKeyId"], given["SecretAccessKey"], given["SessionToken"], given["Expiration"].timestamp()
    )


def check_either(checked: Mapping[str, object], partial: bool) -> None:
    """A body gives a role or an access key, not both; a complete one gives one of them whole."""
    keys = [name for name in ("access_key_id", "secret_access_key") if checked.get(name) is not None]
    if checked.get("role_arn") is not None and keys:
        raise InputError(
            f"and {keys[0]} exclude each other: give a role (keyless) or an access key, not both",
            field="destination.role_arn",
        )
    if partial or checked.get("role_arn") is not None:
        return
    for name in ("access_key_id", "secret_access_key"):
        if checked.get(name) is None:
            raise InputError("is required (or give role_arn instead of an access key)", field=f"destination.{name}")
