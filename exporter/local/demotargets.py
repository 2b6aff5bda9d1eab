"""The demo's "customer" destination of each type, on a local server: its body, its files, teardown.

Azure Blob: a container on the demo's Azurite. S3: a bucket on a private moto (IAM enforced) and an
IAM user allowed to write, delete and abort uploads in it. GCS: a bucket on a private
gcp-storage-emulator and a service-account key whose token_uri is a loopback token endpoint.
Each is a type's `LocalKind` (kinds.py), named by its registration (`DestinationKind.local`).
"""

from __future__ import annotations

from azure.storage.blob import BlobServiceClient

from .cloudservers import service_account_key
from .kinds import LocalKind, Servers, Target, open_target

DemoTarget = Target
BUCKET = "customer-exports"
PREFIX = "insider/"
S3_ACTIONS = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListBucket", "s3:GetObject"]


def open_demo_target(kind: str, azurite_connection: str) -> Target:
    """Start what the destination type needs and create the customer's bucket or container (`stop()` stops it all)."""
    servers = Servers(azurite_connection)
    try:
        target = open_target(kind, servers, BUCKET, PREFIX)
    except BaseException:
        servers.stop()
        raise
    target.stops.insert(0, servers.stop)
    return target


def _azure(servers: Servers, name: str, prefix: str) -> Target:
    connection = servers.azurite_connection
    container = BlobServiceClient.from_connection_string(connection).create_container(name)
    body = {"type": "azure_blob", "connection_string": connection, "container": name, "prefix": prefix}
    return Target(
        "azure_blob",
        f"container '{name}' (Azurite)",
        body,
        lambda: sorted(b.name for b in container.list_blobs()),
        lambda blob: container.download_blob(blob).readall(),
    )


def _s3(servers: Servers, name: str, prefix: str) -> Target:
    moto = servers.moto()
    admin = moto.client()
    admin.create_bucket(Bucket=name)
    key = moto.create_user(f"exporter-{name}", S3_ACTIONS, name)
    body = {"type": "s3", "bucket": name, "prefix": prefix, "region": moto.region, **key, "endpoint_url": moto.url}

    def names() -> list[str]:
        return sorted(o["Key"] for o in admin.list_objects_v2(Bucket=name).get("Contents", []))

    return Target(
        "s3",
        f"S3 bucket '{name}' (moto, IAM enforced)",
        body,
        names,
        lambda key: admin.get_object(Bucket=name, Key=key)["Body"].read(),
    )


def _gcs(servers: Servers, name: str, prefix: str) -> Target:
    emulator, tokens = servers.gcs(), servers.tokens()
    client = emulator.client()
    client.create_bucket(name)
    body = {
        "type": "gcs",
        "bucket": name,
        "prefix": prefix,
        "service_account_key": service_account_key(f"{tokens.url}/token"),
        "endpoint_url": emulator.url,
    }
    return Target(
        "gcs",
        f"GCS bucket '{name}' (gcp-storage-emulator)",
        body,
        lambda: sorted(b.name for b in client.list_blobs(name)),
        lambda blob: client.bucket(name).blob(blob).download_as_bytes(),
    )


AZURE_BLOB = LocalKind(_azure)
S3 = LocalKind(_s3)
GCS = LocalKind(_gcs)
