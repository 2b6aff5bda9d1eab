"""Keyless destinations for tests: the platform's AWS principal and a customer's role on moto.

moto (server mode, IAM enforced) plays both sides: the platform's principal is an IAM user whose key
is boto3's default chain (environment variables, as a deployed app's web identity would be), allowed
only sts:AssumeRole; the customer's role trusts that user's ARN on condition sts:ExternalId, and its
policy allows actions on one bucket. moto 5 checks the trust policy's AWS principal (an exact ARN)
and a StringEquals condition on sts:ExternalId when a role is assumed, and the role's policies at
every S3 request made with the session credentials.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

from exporter.identity import s3_trust_policy
from exporter.local.cloudservers import MotoServer
from exporter.settings import Settings
from tests.destination_helpers import REGION, new_bucket_name


def trust_certificate(monkeypatch, cert: Any) -> None:
    """The SDKs trust the certificate made at start: azure-identity's requests by the environment's CA bundle,
    and the storage client's transport (its pinned session reads nothing from the environment,
    exporter/egress.py) by being told so here."""
    from azure.core.pipeline.transport import RequestsTransport

    from exporter.destinations import azure_blob

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))

    class Trusting(RequestsTransport):
        def __init__(self, **kwargs: Any):
            super().__init__(connection_verify=str(cert), **kwargs)

    monkeypatch.setattr(azure_blob, "RequestsTransport", Trusting)


ASSUME_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}


@dataclass
class Platform:
    """The platform's AWS principal on moto: an IAM user allowed sts:AssumeRole, its key in the default chain."""

    server: MotoServer
    arn: str
    key: dict[str, str]

    def settings(self, settings: Settings) -> Settings:
        return dataclasses.replace(settings, aws_principal_arn=self.arn, aws_sts_endpoint=self.server.url)


def make_platform(server: MotoServer, tag: str, monkeypatch) -> Platform:
    iam = server.client("iam")
    name = f"platform-{tag}-{uuid.uuid4().hex[:4]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="assume", PolicyDocument=json.dumps(ASSUME_ONLY))
    created = iam.create_access_key(UserName=name)["AccessKey"]
    key = {"access_key_id": created["AccessKeyId"], "secret_access_key": created["SecretAccessKey"]}
    # boto3's default chain: environment variables first (no profile, no instance metadata on loopback).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["secret_access_key"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return Platform(server, arn, key)


# A role here trusts the platform by the very policy the console tells a customer to write
# (`s3_trust_policy`): moto enforcing it proves that wording lets the platform in, and only with the
# account's external id (test_keyless_s3's wrong-external-id and other-principal tests fail otherwise).
def bucket_policy(bucket: str, actions: list[str]) -> dict[str, Any]:
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}]}


@dataclass
class S3RoleKit:
    """A customer's bucket reached by a role the platform assumes (the kit interface of tests/destination_helpers.py)."""

    server: MotoServer
    platform: Platform
    bucket: str
    role_name: str
    role_arn: str
    external_id: str
    actions: list[str]
    kind: str = "s3"
    refusal_words: str = "may not write to bucket"

    def body(self, prefix: str = "insider/", role_arn: str | None = None) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bucket": self.bucket,
            "prefix": prefix,
            "region": REGION,
            "role_arn": role_arn or self.role_arn,
            "endpoint_url": self.server.url,
        }

    def another_role(self, principal_arn: str, external_id: str, name: str) -> str:
        """Another role on the same bucket, trusting `principal_arn` with `external_id`: its ARN."""
        return _role(
            self.server, name, s3_trust_policy(principal_arn, external_id), bucket_policy(self.bucket, self.actions)
        )

    def credentials_update(self) -> dict[str, Any]:
        return {"role_arn": self.role_arn}

    def remove_policy(self) -> None:
        self.server.client("iam").delete_role_policy(RoleName=self.role_name, PolicyName="bucket")

    def restore_policy(self) -> None:
        policy = json.dumps(bucket_policy(self.bucket, self.actions))
        self.server.client("iam").put_role_policy(RoleName=self.role_name, PolicyName="bucket", PolicyDocument=policy)

    def names(self) -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, name: str) -> bytes:
        return self.server.client().get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def secrets(self) -> dict[str, str]:
        return {
            "platform secret key": self.platform.key["secret_access_key"],
            "admin secret": self.server.secret_access_key,
        }


def _role(server: MotoServer, name: str, trust: dict[str, Any], policy: dict[str, Any]) -> str:
    iam = server.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="bucket", PolicyDocument=json.dumps(policy))
    return arn


def make_role_kit(server: MotoServer, platform: Platform, external_id: str, tag: str, actions: list[str]) -> S3RoleKit:
    """A fresh bucket and a role on it that trusts the platform with the account's external id."""
    bucket = new_bucket_name(tag)
    server.client().create_bucket(Bucket=bucket)
    name = f"export-{bucket}"
    arn = _role(server, name, s3_trust_policy(platform.arn, external_id), bucket_policy(bucket, actions))
    return S3RoleKit(server, platform, bucket, name, arn, external_id, actions)


# ------------------------------------------------------------------ GCS by the platform's identity


PLATFORM_SA = "event-export@platform-project.iam.gserviceaccount.com"
SUBJECT_TOKEN = "managed-identity-token-for-api-AzureADTokenExchange"


@dataclass
class GcsKeylessKit:
    """A bucket on the GCS emulator reached by the platform's identity (ADC: an external_account on loopback)."""

    emulator: Any  # GcsEmulator
    federation: Any  # exporter.local.federation.GoogleFederation
    bucket: str
    impersonate: str | None = None
    kind: str = "gcs"

    def body(self, prefix: str = "insider/", **changes: Any) -> dict[str, Any]:
        body = {"type": "gcs", "bucket": self.bucket, "prefix": prefix, "endpoint_url": self.emulator.url}
        if self.impersonate:
            body["impersonate"] = self.impersonate
        return {**body, **changes}

    def names(self) -> list[str]:
        return sorted(b.name for b in self.emulator.client().list_blobs(self.bucket))

    def read(self, name: str) -> bytes:
        return self.emulator.client().bucket(self.bucket).blob(name).download_as_bytes()


def google_platform(tmp_path, monkeypatch, settings: Settings):
    """The loopback federation endpoints and ADC pointing at them; the settings naming the platform's account."""
    from exporter.local.federation import GoogleFederation

    federation = GoogleFederation(accepted={SUBJECT_TOKEN}).start()
    token_file = tmp_path / "subject-token"
    token_file.write_text(SUBJECT_TOKEN)
    config = federation.config(tmp_path / "adc.json", token_file, PLATFORM_SA)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(config))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a metadata server
    configured = dataclasses.replace(
        settings, gcp_service_account=PLATFORM_SA, gcp_iam_endpoint=federation.iam_endpoint
    )
    return federation, configured
