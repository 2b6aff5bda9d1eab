"""Destinations of every type for tests: a "kit" per destination type (a fresh container or bucket on a
local server, its destination body, a refused body, its listing), and the helpers that run the export
scenarios of tests/export_helpers.py against any kit.

The types are the registered ones (exporter/destinations/__init__.py), and their servers and containers
come from each type's local tools (exporter/local/kinds.py). The servers are real (their session fixtures
are in conftest.py): Azurite, moto in server mode with IAM enforcement, gcp-storage-emulator, and a
loopback OAuth token endpoint for service-account keys. The three cloud types have a richer kit here (a
refused body, the secrets to look for); any other registered type gets a `TargetKit` of its local target.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import gzip
import io
import itertools
import json
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from azure.storage.blob import BlobServiceClient

from exporter.clock import from_unix
from exporter.destinations import destination_types, open_destination, s3
from exporter.export import runner
from exporter.export.formats import compress
from exporter.export.runner import export_window
from exporter.integrations.bodies import parse_destination
from exporter.local.cloudservers import GcsEmulator, MotoServer, TokenEndpoint, service_account_key
from exporter.local.devstorage import DEV_KEY
from exporter.local.kinds import Servers, Target, open_target
from exporter.ucd.segments import to_ms
from exporter.windows import Window
from tests import export_helpers
from tests.export_helpers import ACCOUNT, H, due_at, populate, selection_recorded
from tests.helpers import integration_body as azure_integration_body

KINDS = destination_types()
WRONG_AZURE_KEY = base64.b64encode(b"a-wrong-account-key-for-the-destination-tests!!").decode()
REGION = "us-east-1"


def destination_from_body(body: dict[str, Any]):
    """The real destination client a stored integration with this destination body would get."""
    params = parse_destination(body, partial=False).complete()
    return open_destination(params.type, params.secret, params.container, params.prefix)


def integration_body(destination: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """tests.helpers.integration_body with a destination body of any type."""
    return azure_integration_body("unused", "unused", destination=destination, **overrides)


# ------------------------------------------------------------------ kits: one container or bucket each


@dataclass
class AzureKit:
    connection: str
    container: Any  # ContainerClient
    kind: str = "azure_blob"
    refusal_words: str = "refused the credentials"

    def body(self, prefix: str = "insider/") -> dict[str, Any]:
        return {
            "type": self.kind,
            "connection_string": self.connection,
            "container": self.container.container_name,
            "prefix": prefix,
        }

    def refused_body(self, prefix: str = "insider/") -> dict[str, Any]:
        return {**self.body(prefix), "connection_string": self.connection.replace(DEV_KEY, WRONG_AZURE_KEY)}

    def credentials_update(self) -> dict[str, Any]:
        return {"connection_string": self.connection}

    def names(self) -> list[str]:
        return sorted(b.name for b in self.container.list_blobs())

    def read(self, name: str) -> bytes:
        return self.container.download_blob(name).readall()

    def content_type(self, name: str) -> str:
        return self.container.get_blob_client(name).get_blob_properties().content_settings.content_type

    def secrets(self) -> dict[str, str]:
        return {"account key": DEV_KEY, "wrong key": WRONG_AZURE_KEY}


@dataclass
class S3Kit:
    server: MotoServer
    bucket: str
    key: dict[str, str]  # a user allowed everything on this bucket (and on the other kits' buckets)
    kind: str = "s3"
    refusal_words: str = "secret access key does not match"
    wrong_secret: str = field(default_factory=lambda: "wrong" + uuid.uuid4().hex + "X" * 8)

    def body(self, prefix: str = "insider/") -> dict[str, Any]:
        return {
            "type": self.kind,
            "bucket": self.bucket,
            "prefix": prefix,
            "region": REGION,
            "access_key_id": self.key["access_key_id"],
            "secret_access_key": self.key["secret_access_key"],
            "endpoint_url": self.server.url,
        }

    def refused_body(self, prefix: str = "insider/") -> dict[str, Any]:
        return {**self.body(prefix), "secret_access_key": self.wrong_secret}

    @property
    def server_url(self) -> str:
        return self.server.url

    def credentials_update(self) -> dict[str, Any]:
        return {"secret_access_key": self.key["secret_access_key"]}

    def names(self) -> list[str]:
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, name: str) -> bytes:
        return self.server.client().get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def content_type(self, name: str) -> str:
        return self.server.client().head_object(Bucket=self.bucket, Key=name)["ContentType"]

    def pending_uploads(self) -> list[str]:
        """Multipart uploads neither completed nor aborted."""
        return [u["Key"] for u in self.server.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]

    def secrets(self) -> dict[str, str]:
        return {
            "secret access key": self.key["secret_access_key"],
            "wrong secret": self.wrong_secret,
            "admin secret": self.server.secret_access_key,
        }


@dataclass
class GcsKit:
    emulator: GcsEmulator
    tokens: TokenEndpoint
    bucket: str
    key: dict[str, str]
    kind: str = "gcs"
    refusal_words: str = "refused the service account key"

    def body(self, prefix: str = "insider/", key: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "type": self.kind,
            "bucket": self.bucket,
            "prefix": prefix,
            "service_account_key": key or self.key,
            "endpoint_url": self.emulator.url,
        }

    def refused_body(self, prefix: str = "insider/") -> dict[str, Any]:
        return self.body(prefix, {**self.key, "token_uri": f"{self.tokens.url}/refuse"})

    @property
    def server_url(self) -> str:
        return self.emulator.url

    def credentials_update(self) -> dict[str, Any]:
        return {"service_account_key": self.key}

    def names(self) -> list[str]:
        return sorted(b.name for b in self.emulator.client().list_blobs(self.bucket))

    def read(self, name: str) -> bytes:
        return self.emulator.client().bucket(self.bucket).blob(name).download_as_bytes()

    def content_type(self, name: str) -> str:
        blob = self.emulator.client().bucket(self.bucket).get_blob(name)
        return blob.content_type

    def secrets(self) -> dict[str, str]:
        pem = self.key["private_key"]
        body = "".join(pem.strip().splitlines()[1:-1])
        return {
            "private key": pem,
            "private key (body)": body[40:100],
            "private key (JSON-escaped)": pem.replace("\n", "\\n")[:120],
        }


@dataclass
class TargetKit:
    """A kit for a registered type without a richer one here: its local target (exporter/local/kinds.py)."""

    target: Target

    @property
    def kind(self) -> str:
        return self.target.kind

    def body(self, prefix: str = "insider/") -> dict[str, Any]:
        return {**self.target.body, "prefix": prefix}

    def names(self) -> list[str]:
        return self.target.names()

    def read(self, name: str) -> bytes:
        return self.target.read(name)


_bucket_seq = itertools.count()
BUCKET_PREFIX = "b"  # every kit's container or bucket: the session's S3 kit user is allowed on "b*"


def new_bucket_name(tag: str) -> str:
    return f"{BUCKET_PREFIX}{tag}-{next(_bucket_seq)}"


def servers(request) -> Servers:
    """The local servers, as the session's fixtures (conftest.py) give them: started on first use, once."""
    fixtures = {"moto": "moto_s3", "gcs": "gcs_emulator", "tokens": "token_endpoint"}
    given = {name: (lambda fixture=fixture: request.getfixturevalue(fixture)) for name, fixture in fixtures.items()}
    return Servers(request.getfixturevalue("azurite_connection"), given)


def _azure_kit(request, local: Servers, name: str) -> AzureKit:
    connection = local.azurite_connection
    service = BlobServiceClient.from_connection_string(connection)
    request.addfinalizer(service.close)  # its connections, at the test's end
    return AzureKit(connection, service.create_container(name))


def _s3_kit(request, local: Servers, name: str) -> S3Kit:
    server = local.moto()
    server.client().create_bucket(Bucket=name)
    # The exporter ends a split part in a block of S3's minimum part size: the server's, here (the suite's moto
    # takes smaller parts, so its grids need fewer rows; tests/test_s3_part_minimum.py runs at AWS's own).
    request.getfixturevalue("monkeypatch").setattr(s3, "MIN_PART_BYTES", server.min_part_bytes)
    return S3Kit(server, name, request.getfixturevalue("s3_kit_key"))  # the session's user, allowed on "b*"


def _gcs_kit(request, local: Servers, name: str) -> GcsKit:
    emulator, tokens = local.gcs(), local.tokens()
    emulator.client().create_bucket(name)
    return GcsKit(emulator, tokens, name, service_account_key(f"{tokens.url}/token", name=f"sa-{name}"))


RICHER_KITS = {"azure_blob": _azure_kit, "s3": _s3_kit, "gcs": _gcs_kit}


def part_minimum(kit) -> int:
    """The least size of a file's part but the last on this kit's server: S3's minimum part size (AWS's 5 MiB;
    the suite's moto takes 256 KiB), none elsewhere."""
    return kit.server.min_part_bytes if kit.kind == "s3" else 0


def takes_any_block(kit) -> bool:
    """Whether this kit's server takes a file's blocks of any size (Azure), where S3 has a minimum part size and
    GCS a 256 KiB grid: a test's large window may then be a fraction of the rows in as small blocks."""
    return kit.kind == "azure_blob"


def make_kit(request, kind: str, tag: str):
    """A fresh container or bucket of the registered type `kind` (the servers are started on first use)."""
    name = new_bucket_name(tag)
    local = servers(request)
    richer = RICHER_KITS.get(kind)
    return richer(request, local, name) if richer else TargetKit(open_target(kind, local, name, "insider/"))


# ------------------------------------------------------------------ export scenarios against any kit


def create(ctx, clock, kit, **overrides) -> str:
    """An integration into the kit's destination, activated at ACT, with events stored before it."""
    return export_helpers.create(ctx, clock, "unused", "unused", destination=kit.body(), **overrides)


def create_with_large_window(ctx, clock, kit, rows_per_segment: int, **overrides) -> str:
    """An integration (the benchmark's selection) whose first window holds three large segments."""
    entries = [timedelta(minutes=m) for m in (5, 20, 40)]
    return create_with_segments(ctx, clock, kit, entries, rows_per_segment, **overrides)


def create_with_small_segments(ctx, clock, kit, segments: int, rows_per_segment: int, **overrides) -> str:
    """An integration whose first window holds many small segments (a platform's small upserts), 9 s apart."""
    entries = [timedelta(minutes=5, seconds=9 * i) for i in range(segments)]
    return create_with_segments(ctx, clock, kit, entries, rows_per_segment, **overrides)


# A window of a platform's small upserts (a segment each) whose gzip members cover several segments each, in
# blocks of about a member: 60 segments of 20 events, 10 members of about 6 segments, blocks of 2 KiB (a
# member's compressed bytes). Every member end still falls between segments and every block end at a member's,
# as with 200 segments in 20 members, at a third of the segments to store and read (each export reads them all).
SMALL_SEGMENTS, SMALL_ROWS, SMALL_MEMBERS, SMALL_BLOCK = 60, 20, 10, 2 * 1024


def create_with_members_of_small_segments(ctx, clock, kit, monkeypatch, **overrides) -> str:
    """`create_with_small_segments` of SMALL_SEGMENTS, its members and blocks set as described above."""
    iid = create_with_small_segments(ctx, clock, kit, SMALL_SEGMENTS, SMALL_ROWS, **overrides)
    stored = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, export_helpers.ACT, export_helpers.ACT + H))
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", stored // SMALL_MEMBERS)
    monkeypatch.setattr(runner, "BLOCK_BYTES", SMALL_BLOCK)
    return iid


def assert_members_span_segments(contents: dict) -> None:
    members = gzip_members(next(iter(contents.values())))
    per_member = SMALL_SEGMENTS // SMALL_MEMBERS
    assert SMALL_MEMBERS * 2 // 3 <= members <= SMALL_MEMBERS * 3 // 2, (
        f"{members} members: about one per {per_member} segments, not one per segment"
    )


def create_with_segments(ctx, clock, kit, entries: list[timedelta], rows_per_segment: int, **overrides) -> str:
    """An integration (the benchmark's selection) whose first window holds a segment stored at each of `entries`."""
    from bench import data

    selection = {"events": data.SELECTION_EVENTS, "attributes": data.SELECTION_ATTRIBUTES}
    iid = create(ctx, clock, kit, **selection, **overrides)
    container = ctx.storage.ucd_container()
    for i, entry in enumerate(entries):
        entry_ms = to_ms(export_helpers.ACT + entry)
        data.write_segment(container, ACCOUNT, entry_ms, data.segment_table(i, rows_per_segment, entry_ms), 20)
    return iid


def behind(ctx, clock, kit, windows: int, skip: set[int] = frozenset(), **overrides) -> str:
    """`create`, then stored events in the first `windows` windows (none in `skip`), and the clock where the
    last of them is due: the integration is that many windows behind."""
    iid = create(ctx, clock, kit, **overrides)
    populate(ctx, clock, range(windows), skip=skip)
    clock.set(due_at(windows))
    return iid


def assert_bytes_match_a_clean_export(ctx, integration_id, contents, scratch) -> None:
    """Re-export every window into a scratch destination of the same type: each file must be byte-identical."""
    integration = ctx.repo.get(ACCOUNT, integration_id)
    clean = destination_from_body(scratch.body(integration.destination.prefix))
    for (start, end), data in contents.items():
        window = Window(from_unix(start), from_unix(end))
        selection = selection_recorded(ctx, integration.id, start)
        result = export_window(ctx.ucd, ACCOUNT, integration.id, selection, window, clean)
        assert scratch.read(result.path) == data, f"window {start} differs from a clean export"


def gzip_members(data: bytes) -> int:
    """How many gzip members `data` holds (each one complete)."""
    count = 0
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        member.decompress(data)
        assert member.eof, "a member cut short"
        data, count = member.unused_data, count + 1
    return count


def assert_rows_match_the_csv_export(ctx, integration_id, contents, scratch) -> None:
    """Each gzip file, decompressed, holds exactly the rows of the window's `csv` export (csv.gz: its very bytes);
    and the same window exported with a manifest (in one invocation) is the very same bytes."""
    integration = ctx.repo.get(ACCOUNT, integration_id)
    name = integration.selection.format
    clean = destination_from_body(scratch.body("as-csv/"))
    as_csv = dataclasses.replace(integration.selection, format="csv", manifest=False)
    for (start, end), data in contents.items():
        window = Window(from_unix(start), from_unix(end))
        with_manifest = dataclasses.replace(selection_recorded(ctx, integration.id, start), manifest=True)
        result = export_window(ctx.ucd, ACCOUNT, integration.id, with_manifest, window, clean)
        assert scratch.read(result.path) == data, "one encoding, with or without a manifest"
        assert json.loads(scratch.read(result.path + ".manifest.json"))["bytes"] == len(data)
        text = scratch.read(export_window(ctx.ucd, ACCOUNT, integration.id, as_csv, window, clean).path)
        if name == "csv.gz":
            assert gzip.decompress(data) == text, "the csv.gz file is gzip of exactly the CSV bytes"
            continue
        rows = list(csv.DictReader(io.StringIO(text.decode(), newline="")))
        objects = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
        assert [o["event_id"] for o in objects] == [r["event_id"] for r in rows], "the CSV's rows, in its order"
        assert all(list(o) == list(r) for o, r in zip(objects, rows)), "the CSV row's fields, in its order"
        strings = [{k: v for k, v in o.items() if isinstance(v, str)} for o in objects]
        assert strings == [{k: r[k] for k in s} for s, r in zip(strings, rows)], "the text values are the CSV's"
