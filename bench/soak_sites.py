"""Customer destinations as the soak sees them: what an integration is given, how the customer's key
is revoked and restored, and the soak's own reader of the delivered files (each type read alone, with
its own client, straight from its server: never through a proxy, never through the app).

- Azure Blob: revoked by spoiling our SharedKey signature at the proxy, so Azurite itself answers 403.
- S3 (moto with IAM enforcement): revoked by deleting the bucket policy of the integration's IAM user,
  so moto itself answers AccessDenied; restored by putting it back.
- GCS: the emulator accepts any token and cannot refuse a key, so a revocation is the proxy answering
  403 to every request for that bucket (what GCS answers a service account that lost its role).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from exporter.local.cloudservers import GcsEmulator, MotoServer, service_account_key
from exporter.local.faultproxy import FaultProxy, Rule

from .soak_servers import DESTINATION_PROXIES, Servers


@dataclass(frozen=True)
class Delivered:
    """One object found at a destination."""

    path: str
    data: bytes
    size: int  # the size the service lists for the committed object


class Site(Protocol):
    name: str
    kind: str

    def destination(self, prefix: str) -> dict[str, Any]: ...
    def credentials_update(self) -> dict[str, Any]: ...
    def revoke(self) -> None: ...
    def restore(self) -> None: ...
    def files(self) -> Iterator[Delivered]: ...
    def uncommitted(self) -> list[str]: ...


class _RevokedAtProxy:
    """A destination whose server cannot be told to refuse our key: its fault proxy refuses for it."""

    def __init__(self, name: str, proxy: FaultProxy):
        self.name = name
        self.proxy = proxy
        self._revocation: Rule | None = None

    def _refusal(self) -> Rule:
        raise NotImplementedError

    def revoke(self) -> None:
        if self._revocation is None:
            self._revocation = self.proxy.add(self._refusal())

    def restore(self) -> None:
        if self._revocation is not None:
            self.proxy.remove(self._revocation)
            self._revocation = None


class AzureBlobSite(_RevokedAtProxy):
    """A customer's container on the customers' Azurite, reached by integrations through a fault proxy."""

    kind = "azure_blob"

    def __init__(self, name: str, container: str, faulty_connection: str, direct_connection: str, proxy: FaultProxy):
        super().__init__(name, proxy)
        self.container = container
        self.faulty_connection = faulty_connection
        self.client = BlobServiceClient.from_connection_string(direct_connection).get_container_client(container)
        try:
            self.client.create_container()
        except ResourceExistsError:
            pass

    def destination(self, prefix: str) -> dict[str, Any]:
        return {
            "type": self.kind,
            "connection_string": self.faulty_connection,
            "container": self.container,
            "prefix": prefix,
        }

    def credentials_update(self) -> dict[str, Any]:
        return {"connection_string": self.faulty_connection}

    def _refusal(self) -> Rule:
        """The customer rotates the key we hold: from now on Azurite refuses our signatures (403)."""
        account_path = f"/{self.client.account_name}/{self.container}"
        return Rule("bad_signature", path=rf"^{account_path}(/|\?|$)", times=10**9)

    def files(self) -> Iterator[Delivered]:
        """Every committed blob (a listing never shows a blob whose block list was not committed)."""
        for blob in self.client.list_blobs():
            yield Delivered(blob.name, self.client.download_blob(blob.name).readall(), blob.size)

    def uncommitted(self) -> list[str]:
        """Blobs with staged blocks and no committed version (a writer died before its commit)."""
        committed = {b.name for b in self.client.list_blobs()}
        return [b.name for b in self.client.list_blobs(include=["uncommittedblobs"]) if b.name not in committed]


class S3Site:
    """A customer's bucket on moto, written by an IAM user allowed only that bucket, through a fault proxy."""

    kind = "s3"

    def __init__(self, name: str, bucket: str, moto: MotoServer, proxy: FaultProxy):
        self.name = name
        self.bucket = bucket
        self.proxy = proxy
        self.user = f"soak-{name}"
        self.admin = moto.client()  # the soak's reader and the customer's IAM console: straight to moto
        self.iam = moto.client("iam")
        self.admin.create_bucket(Bucket=bucket)
        self.key = moto.create_user(self.user, ["s3:*"], bucket)
        self._policy = self.iam.get_user_policy(UserName=self.user, PolicyName=self._policy_name())["PolicyDocument"]
        self.revoked = False

    def _policy_name(self) -> str:
        return f"{self.user}-policy"  # as MotoServer.create_user names it

    def destination(self, prefix: str) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bucket": self.bucket,
            "prefix": prefix,
            "region": "us-east-1",
            **self.key,
            "endpoint_url": self.proxy.url,
        }

    def credentials_update(self) -> dict[str, Any]:
        return {"secret_access_key": self.key["secret_access_key"]}

    def revoke(self) -> None:
        """The customer removes our user's permission on the bucket: moto answers AccessDenied."""
        if not self.revoked:
            self.iam.delete_user_policy(UserName=self.user, PolicyName=self._policy_name())
            self.revoked = True

    def restore(self) -> None:
        if self.revoked:
            document = self._policy if isinstance(self._policy, str) else json.dumps(self._policy)
            self.iam.put_user_policy(UserName=self.user, PolicyName=self._policy_name(), PolicyDocument=document)
            self.revoked = False

    def files(self) -> Iterator[Delivered]:
        """Every object (an upload is listed only once it was completed)."""
        for page in self.admin.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                body = self.admin.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                yield Delivered(item["Key"], body, item["Size"])

    def uncommitted(self) -> list[str]:
        """Multipart uploads neither completed nor aborted (a writer died before its commit)."""
        answer = self.admin.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in answer.get("Uploads", [])]


class GcsSite(_RevokedAtProxy):
    """A customer's bucket on the GCS emulator, written with a service-account key, through a fault proxy."""

    kind = "gcs"

    def __init__(self, name: str, bucket: str, emulator: GcsEmulator, token_uri: str, proxy: FaultProxy):
        super().__init__(name, proxy)
        self.bucket = bucket
        self.client = emulator.client()  # the soak's reader: straight to the emulator
        self.client.create_bucket(bucket)
        self.key = service_account_key(token_uri, name=f"soak-{name}")

    def destination(self, prefix: str) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bucket": self.bucket,
            "prefix": prefix,
            "service_account_key": self.key,
            "endpoint_url": self.proxy.url,
        }

    def credentials_update(self) -> dict[str, Any]:
        return {"service_account_key": self.key}

    def _refusal(self) -> Rule:
        """The service account loses its role on the bucket: every request for it is answered 403."""
        return Rule("403", path=rf"/b/{self.bucket}(/|\?|$)", times=10**9)

    def files(self) -> Iterator[Delivered]:
        """Every object (a resumable upload is listed only once its last chunk finalized it)."""
        for blob in self.client.list_blobs(self.bucket):
            yield Delivered(blob.name, blob.download_as_bytes(), blob.size or 0)

    def uncommitted(self) -> list[str]:
        return []  # unfinished resumable sessions are not listable; they are never visible


def open_site(name: str, kind: str, container: str, servers: Servers) -> Site:
    """The customer's destination `name` of type `kind`, created empty on its server."""
    proxy = servers.proxies[DESTINATION_PROXIES[kind]]
    if kind == "azure_blob":
        return AzureBlobSite(name, container, servers.customers_faulty, servers.customers_direct, proxy)
    if kind == "s3":
        return S3Site(name, container, servers.moto, proxy)
    if kind == "gcs":
        return GcsSite(name, container, servers.gcs, f"{servers.tokens.url}/token", proxy)
    raise ValueError(kind)
