"""The demo's "customer" destination of each type, on a local server: its body, its files, teardown.

Azure Blob: a container on the demo's Azurite. S3: a bucket on a private moto (IAM enforced) and an
IAM user allowed to write, delete and abort uploads in it. GCS: a bucket on a private
gcp-storage-emulator and a service-account key whose token_uri is a loopback token endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import BlobServiceClient

from .cloudservers import TokenEndpoint, service_account_key, start_gcs_emulator, start_moto

BUCKET = "customer-exports"
PREFIX = "insider/"
S3_ACTIONS = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket", "s3:GetObject"]


@dataclass
class DemoTarget:
    kind: str
    where: str  # how the narrative names it
    body: dict[str, Any]  # the destination body the demo verifies and creates
    names: Callable[[], list[str]]
    read: Callable[[str], bytes]
    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


def open_target(kind: str, azurite_connection: str) -> DemoTarget:
    """Start what the destination type needs and create the customer's bucket or container."""
    if kind == "azure_blob":
        return _azure(azurite_connection)
    if kind == "s3":
        return _s3()
    if kind == "gcs":
        return _gcs()
    raise ValueError(f"unknown destination type {kind!r}")


def _azure(connection: str) -> DemoTarget:
    container = BlobServiceClient.from_connection_string(connection).create_container(BUCKET)
    body = {"type": "azure_blob", "connection_string": connection, "container": BUCKET, "prefix": PREFIX}
    return DemoTarget(
        "azure_blob",
        f"container '{BUCKET}' (Azurite)",
        body,
        lambda: sorted(b.name for b in container.list_blobs()),
        lambda name: container.download_blob(name).readall(),
    )


def _s3() -> DemoTarget:
    moto = start_moto()
    try:
        admin = moto.client()
        admin.create_bucket(Bucket=BUCKET)
        key = moto.create_user("exporter", S3_ACTIONS, BUCKET)
    except BaseException:
        moto.stop()
        raise
    body = {"type": "s3", "bucket": BUCKET, "prefix": PREFIX, "region": moto.region, **key, "endpoint_url": moto.url}

    def names() -> list[str]:
        return sorted(o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET).get("Contents", []))

    return DemoTarget(
        "s3",
        f"S3 bucket '{BUCKET}' (moto, IAM enforced)",
        body,
        names,
        lambda name: admin.get_object(Bucket=BUCKET, Key=name)["Body"].read(),
        [moto.stop],
    )


def _gcs() -> DemoTarget:
    emulator = start_gcs_emulator()
    tokens = TokenEndpoint().start()
    try:
        client = emulator.client()
        client.create_bucket(BUCKET)
    except BaseException:
        tokens.stop()
        emulator.stop()
        raise
    body = {
        "type": "gcs",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "service_account_key": service_account_key(f"{tokens.url}/token"),
        "endpoint_url": emulator.url,
    }
    return DemoTarget(
        "gcs",
        f"GCS bucket '{BUCKET}' (gcp-storage-emulator)",
        body,
        lambda: sorted(b.name for b in client.list_blobs(BUCKET)),
        lambda name: client.bucket(BUCKET).blob(name).download_as_bytes(),
        [emulator.stop, tokens.stop],
    )
