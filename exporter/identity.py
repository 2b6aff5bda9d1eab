"""The platform's identity: what a customer grants access to instead of handing over a key.

Keyless destinations (S3 by role, and later Entra ID and Google identities) need no customer secret:
the customer trusts the platform's own identity, named by the operator's settings, and for AWS an
external id that is the account's own (the confused-deputy guard: another account of the platform
cannot name this customer's role and be let in). The external id is generated once per account,
on first ask, and stored in the identities table; two first asks at once agree (insert-if-absent).

A destination is opened on behalf of an account and a session (an integration, or a verification):
`opening_for` says so for the code that opens it, so keyless credentials know which external id to
present and what to call the session, without widening every destination factory's signature.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient

from .errors import ConfigurationError, InternalError
from .scoped import scoped
from .settings import Settings
from .validation import check_account

EXTERNAL_ID_ROW = "aws-external-id"
EXTERNAL_ID_BYTES = 24  # 32 URL-safe characters: unguessable, and well within STS's 2-1224 characters


@dataclass(frozen=True)
class PlatformIdentity:
    """The platform's own identities in each cloud, as the operator configured them (README's settings)."""

    aws_principal_arn: str = ""  # EXPORT_AWS_PRINCIPAL_ARN: the role or user boto3's default chain signs in as
    aws_sts_endpoint: str = ""  # EXPORT_AWS_STS_ENDPOINT: empty is AWS's regional default
    aws_web_identity: str = ""  # EXPORT_AWS_WEB_IDENTITY: how the platform becomes that principal
    gcp_service_account: str = ""  # EXPORT_GCP_SERVICE_ACCOUNT
    gcp_iam_endpoint: str = ""  # EXPORT_GCP_IAM_ENDPOINT: generateAccessToken URL template; empty is Google's
    azure_tenant_id: str = ""  # EXPORT_AZURE_TENANT_ID: the tenant the multi-tenant application lives in
    azure_client_id: str = ""  # EXPORT_AZURE_CLIENT_ID: that application's (client) id
    azure_authority_host: str = ""  # EXPORT_AZURE_AUTHORITY_HOST: empty is Entra ID's public cloud
    managed_identity_client_id: str = ""  # AzureWebJobsStorage__clientId: the app's identity, the assertion's source

    @classmethod
    def from_settings(cls, settings: Settings) -> PlatformIdentity:
        return cls(
            aws_principal_arn=settings.aws_principal_arn,
            aws_sts_endpoint=settings.aws_sts_endpoint,
            aws_web_identity=settings.aws_web_identity,
            gcp_service_account=settings.gcp_service_account,
            gcp_iam_endpoint=settings.gcp_iam_endpoint,
            azure_tenant_id=settings.azure_tenant_id,
            azure_client_id=settings.azure_client_id,
            azure_authority_host=settings.azure_authority_host,
            managed_identity_client_id=settings.storage_client_id,
        )


class ExternalIds:
    """Each account's AWS external id, in Table Storage: PartitionKey the account, one row."""

    def __init__(self, table: TableClient):
        self.table = table

    def of(self, account: str) -> str:
        """The account's external id, created on the first ask; every later ask (and a racing first one) agrees."""
        account = check_account(account)
        try:
            return str(self.table.get_entity(account, EXTERNAL_ID_ROW)["external_id"])
        except ResourceNotFoundError:
            pass
        try:
            self.table.create_entity(
                {
                    "PartitionKey": account,
                    "RowKey": EXTERNAL_ID_ROW,
                    "external_id": secrets.token_urlsafe(EXTERNAL_ID_BYTES),
                }
            )
        except ResourceExistsError:
            pass  # another first ask won: its id is the account's
        return str(self.table.get_entity(account, EXTERNAL_ID_ROW)["external_id"])


def identity_json(platform: PlatformIdentity, external_id: str) -> dict[str, Any]:
    """What `integrations identity` answers: the identities to grant, per cloud."""
    return {
        "aws": {"principal_arn": platform.aws_principal_arn or None, "external_id": external_id},
        "gcp": {"service_account": platform.gcp_service_account or None},
        "azure": {"tenant_id": platform.azure_tenant_id or None, "client_id": platform.azure_client_id or None},
    }


# ------------------------------------------------------------------ on whose behalf a destination is opened


@dataclass(frozen=True)
class Opening:
    """Who a destination client is opened for: the account, the session (integration id or `verify`), the identities."""

    account: str
    session: str
    find_external_id: Callable[[], str]  # read only when a keyless destination needs it
    platform: PlatformIdentity

    @property
    def external_id(self) -> str:
        return self.find_external_id()


_opening: ContextVar[Opening | None] = ContextVar("opening", default=None)


def opening_for(opening: Opening) -> AbstractContextManager[None]:
    """Destinations opened inside are opened for `opening` (keyless credentials read it when the client is built)."""
    return scoped(_opening, opening)


def current_opening(what: str) -> Opening:
    """The opening in progress; a keyless destination opened outside one is a bug of ours."""
    opening = _opening.get()
    if opening is None:
        raise InternalError(f"{what} was opened outside an account's opening (exporter.identity.opening_for)")
    return opening


def require(value: str, setting: str, what: str) -> str:
    """A platform identity setting a keyless destination needs: unset is the operator's to fix."""
    if not value:
        raise ConfigurationError(f"is not set: {what} need it (README, settings)", field=setting)
    return value


# ------------------------------------------------------------------ what a customer runs to grant the identity
# One place words the commands: the console's Authentication step shows them with the account's values, and
# docs/keyless.md gives the same text with example values (tests/test_console_keyless.py compares the two).

AZURE_ROLE = "Storage Blob Data Contributor"  # what the platform's Entra application needs on the container
GCS_BUCKET_ROLE = "roles/storage.objectAdmin"  # write, read back (Check delivery), delete the verification's file
GCS_TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"  # lets the platform impersonate the customer's account
ROLE_NAME = "event-export"  # the role the AWS commands create, unless the form names another
# What the role may do under the prefix: write (multipart), read back and list (Check delivery, a commit whose
# answer was lost), delete (the verification's test file; without it the file stays, and verification says so).
S3_OBJECT_ACTIONS = (
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
S3_BUCKET_ACTIONS = ("s3:ListBucket",)
# A customer's name the form does not have yet (or has in a form no command should carry) reads as these.
BUCKET, CONTAINER, STORAGE_ACCOUNT = "BUCKET", "CONTAINER", "STORAGE_ACCOUNT"
CUSTOMER_SERVICE_ACCOUNT = "SERVICE_ACCOUNT@PROJECT.iam.gserviceaccount.com"
_PLAIN = re.compile(r"[\w@%+=:,./-]+")  # shell-safe as it is: no quoting needed
_NAME = re.compile(r"[A-Za-z0-9][\w.@/-]{0,254}")  # a name a command may carry unquoted (else the placeholder)


@dataclass(frozen=True)
class GrantStep:
    text: str  # what the step does, for people
    commands: tuple[str, ...] = ()  # shell commands, copied as they are


@dataclass(frozen=True)
class Grant:
    """What a customer grants for one destination type: the platform's identity (label, value) and the steps."""

    identity: tuple[tuple[str, str], ...]
    steps: tuple[GrantStep, ...]


def shell_word(value: str) -> str:
    """`value` as one shell word: bare when plain, in double quotes when nothing in it expands, else single quotes."""
    if _PLAIN.fullmatch(value):
        return value
    if not re.search(r"[\"$`\\!]", value):
        return f'"{value}"'
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _command(*parts: str) -> str:
    """A command, its options on continuation lines (each part is already shell words)."""
    return " \\\n  ".join(parts)


def _name(value: str, placeholder: str) -> str:
    return value if _NAME.fullmatch(value or "") else placeholder


def s3_trust_policy(principal_arn: str, external_id: str) -> dict[str, Any]:
    """The customer's role trusts the platform's principal only with the account's external id."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": principal_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def s3_grant(principal_arn: str, external_id: str, bucket: str = "", prefix: str = "", role_arn: str = "") -> Grant:
    """A role the platform assumes with the account's external id, and its policy on the bucket under the prefix."""
    role = _name(role_arn.rsplit("/", 1)[-1], ROLE_NAME) if role_arn else ROLE_NAME
    bucket = _name(bucket, BUCKET)
    objects = f"arn:aws:s3:::{bucket}/" + (f"{prefix.strip('/')}/*" if prefix.strip("/") else "*")
    trust = s3_trust_policy(principal_arn, external_id)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": list(S3_OBJECT_ACTIONS), "Resource": objects},
            {"Effect": "Allow", "Action": list(S3_BUCKET_ACTIONS), "Resource": f"arn:aws:s3:::{bucket}"},
        ],
    }
    return Grant(
        (("Platform principal", principal_arn), ("External ID", external_id)),
        (
            GrantStep(
                "Create a role the platform may assume, with this account's external ID in its trust policy:",
                (
                    _command(
                        f"aws iam create-role --role-name {role}",
                        f"--assume-role-policy-document {shell_word(json.dumps(trust, indent=2))}",
                    ),
                ),
            ),
            GrantStep(
                "Let the role write to the bucket under the prefix, read back what it wrote, and delete the "
                "verification's test file:",
                (
                    _command(
                        f"aws iam put-role-policy --role-name {role} --policy-name event-export-bucket",
                        f"--policy-document {shell_word(json.dumps(policy, indent=2))}",
                    ),
                ),
            ),
            GrantStep(
                "Give the role's ARN below:",
                (f"aws iam get-role --role-name {role} --query Role.Arn --output text",),
            ),
        ),
    )


def azure_grant(client_id: str, account_url: str = "", container: str = "") -> Grant:
    """The platform's Entra application consented in the customer's tenant, with the role on the container."""
    account = _name((urlsplit(account_url).hostname or "").split(".")[0] if account_url else "", STORAGE_ACCOUNT)
    container = _name(container, CONTAINER)
    scope = (
        f'"$(az storage account show --name {account} --query id --output tsv)'
        f'/blobServices/default/containers/{container}"'
    )
    app = shell_word(client_id)
    return Grant(
        (("Platform application (client ID)", client_id), ("Role to assign", AZURE_ROLE)),
        (
            GrantStep(
                "Consent the platform's application in your tenant (an administrator, once):",
                (f"az ad sp create --id {app}",),
            ),
            GrantStep(
                f"Assign it the role {AZURE_ROLE} on the container:",
                (
                    _command(
                        f"az role assignment create --assignee {app}",
                        f"--role {shell_word(AZURE_ROLE)}",
                        f"--scope {scope}",
                    ),
                ),
            ),
            GrantStep("Give your tenant ID below:", ("az account show --query tenantId --output tsv",)),
        ),
    )


def gcs_grant(service_account: str, bucket: str = "", impersonate: str = "") -> Grant:
    """The platform's service account granted on the bucket, or allowed to impersonate the customer's."""
    bucket = _name(bucket, BUCKET)
    yours = _name(impersonate, CUSTOMER_SERVICE_ACCOUNT)
    platform = shell_word(f"serviceAccount:{service_account}")
    return Grant(
        (("Platform service account", service_account),),
        (
            GrantStep(
                "Grant the platform's service account on the bucket:",
                (
                    _command(
                        f"gcloud storage buckets add-iam-policy-binding gs://{bucket}",
                        f"--member={platform} --role={GCS_BUCKET_ROLE}",
                    ),
                ),
            ),
            GrantStep(
                "Or let it impersonate a service account of yours that has the bucket role (your audit logs then "
                "name your own account; give it below as the service account to impersonate):",
                (
                    _command(
                        f"gcloud iam service-accounts add-iam-policy-binding {yours}",
                        f"--member={platform} --role={GCS_TOKEN_CREATOR}",
                    ),
                    _command(
                        f"gcloud storage buckets add-iam-policy-binding gs://{bucket}",
                        f"--member={shell_word(f'serviceAccount:{yours}')} --role={GCS_BUCKET_ROLE}",
                    ),
                ),
            ),
        ),
    )


def grant_for(kind: str, identity: dict[str, Any], container: str, prefix: str, fields: dict[str, str]) -> Grant | None:
    """What to grant for a destination of type `kind` (an `identity_json` answer, the form's values so far); None
    when the operator has not set that cloud up, or the type has no keyless form."""
    if kind == "s3" and identity["aws"]["principal_arn"]:
        aws = identity["aws"]
        return s3_grant(aws["principal_arn"], aws["external_id"], container, prefix, fields.get("role_arn", ""))
    if kind == "azure_blob" and identity["azure"]["client_id"]:
        return azure_grant(identity["azure"]["client_id"], fields.get("account_url", ""), container)
    if kind == "gcs" and identity["gcp"]["service_account"]:
        return gcs_grant(identity["gcp"]["service_account"], container, fields.get("impersonate", ""))
    return None
