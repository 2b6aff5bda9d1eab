"""The S3 destination's body: its bucket and region checks, and the credentials sealed at rest."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InputError, InternalError
from .common import BucketBody, Check, check_endpoint_url, check_token, mask_middle, text_field
from .keyless_s3 import check_either, check_role_arn  # KEYLESS HOOK (issue 24)
from .s3_errors import REGION_RE

REQUIRED = ("bucket", "region")  # and an access key, or a role (KEYLESS HOOK: keyless_s3.check_either)
BUCKET_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]$")
IP_LIKE_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
# AWS's published bucket naming rules beyond the characters: names its own features use.
BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket(value: object, field: str = "destination.bucket") -> str:
    """S3's bucket naming rule (not Azure's container rule: dots are allowed), as AWS publishes it."""
    if not isinstance(value, str) or not BUCKET_RE.fullmatch(value) or ".." in value:
        raise InputError("must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'", field=field)
    if IP_LIKE_RE.fullmatch(value):
        raise InputError("must not be formatted as an IP address (S3's bucket naming rules)", field=field)
    if value.startswith(BUCKET_PREFIXES) or value.endswith(BUCKET_SUFFIXES):
        raise InputError(
            f"must not start with {', '.join(BUCKET_PREFIXES)} nor end with {', '.join(BUCKET_SUFFIXES)} "
            "(S3's bucket naming rules)",
            field=field,
        )
    return value


def check_region(value: object, field: str = "destination.region") -> str:
    if not isinstance(value, str) or not REGION_RE.fullmatch(value):
        raise InputError("must be an AWS region such as eu-west-1", field=field)
    return value


CREDENTIAL_CHECKS: dict[str, Check] = {
    "region": check_region,
    "access_key_id": lambda v, f: check_token(v, f, "an access key id", 128),
    "secret_access_key": lambda v, f: check_token(v, f, "a secret access key", 256),
    "endpoint_url": check_endpoint_url,
    "role_arn": check_role_arn,  # KEYLESS HOOK (issue 24): S3 by role, no key
}


@dataclass(frozen=True)
class S3Credentials:
    """Everything sealed for an S3 destination. `masked` is the only form ever shown."""

    region: str
    access_key_id: str | None  # None: by role (KEYLESS HOOK, issue 24)
    secret_access_key: str | None = field(repr=False)
    endpoint_url: str | None = None
    role_arn: str | None = None  # KEYLESS HOOK (issue 24): assumed with the account's external id

    @classmethod
    def from_secret(cls, secret: str) -> S3Credentials:
        return credentials_from_fields(json.loads(secret))

    def to_secret(self) -> str:
        return json.dumps(
            {
                "region": self.region,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
                "endpoint_url": self.endpoint_url,
                **({"role_arn": self.role_arn} if self.role_arn else {}),  # KEYLESS HOOK (issue 24)
            }
        )

    @property
    def masked(self) -> str:
        """The public part, as JSON: region, masked key id (or the role: no secret), endpoint."""
        if self.role_arn:  # KEYLESS HOOK (issue 24)
            return json.dumps({"region": self.region, "role_arn": self.role_arn, "endpoint_url": self.endpoint_url})
        return json.dumps(
            {
                "region": self.region,
                "access_key_id": mask_middle(self.access_key_id or ""),
                "endpoint_url": self.endpoint_url,
            }
        )

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"


def credentials_from_fields(fields: Mapping[str, object]) -> S3Credentials:
    """The credential part of a checked body (or of a stored one merged with an update)."""
    check_either(dict(fields), partial=False)  # KEYLESS HOOK (issue 24): a merged update too
    region = fields["region"]
    if not isinstance(region, str):
        raise InternalError("destination.region was not checked as text")
    return S3Credentials(
        region,
        text_field(fields, "access_key_id"),
        text_field(fields, "secret_access_key"),
        text_field(fields, "endpoint_url"),
        text_field(fields, "role_arn"),
    )


BODY = BucketBody(check_bucket, CREDENTIAL_CHECKS, REQUIRED, credentials_from_fields, check_either)
