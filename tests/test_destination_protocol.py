"""A second destination type needs no special case: the service and the worker use only the Destination
protocol (exporter/export/destination.py), and the same window gives the same bytes in any destination."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from exporter.context import Context
from exporter.destinations.azure_blob import AzureBlobDestination
from exporter.export.destination import DestinationInfo, UploadLost, UploadState, Verification
from exporter.export.naming import join_prefix, window_path
from exporter.export.plan import EventSelection, Selection
from exporter.export.runner import export_window
from exporter.local.host import tick
from exporter.windows import Window
from tests.helpers import T0, call, integration_body


class MemoryDestination:
    """Files in a dict: what an S3 or GCS destination provides, and nothing more."""

    def __init__(self, files: dict[str, bytes], container: str, prefix: str):
        self.files, self.container, self.prefix = files, container, prefix
        self._staged: dict[str, dict[int, bytes]] = {}
        self.abandoned: list[str] = []

    def describe(self) -> DestinationInfo:
        # As an S3 destination describes itself: the public part of its credentials, as JSON.
        return DestinationInfo(
            container=self.container, masked=json.dumps({"access_key_id": f"memory://{self.container} (key ***)"})
        )

    def verify(self, test_file_name: str) -> Verification:
        return Verification(test_file=join_prefix(self.prefix, test_file_name), deleted=True)

    def stage_block(self, path: str, index: int, data: bytes) -> None:
        self._staged.setdefault(path, {})[index] = bytes(data)

    def resume_upload(self, path: str, state: UploadState, staged) -> None:
        raise UploadLost()  # staged blocks live in this object only: another invocation starts the file again

    def commit_blocks(self, path: str, count: int) -> None:
        staged = self._staged.pop(path)
        self.files[path] = b"".join(staged[i] for i in range(count))

    def abandon_blocks(self, path: str) -> None:
        self.abandoned.append(path)
        self._staged.pop(path, None)


def test_a_destination_implementing_only_the_protocol_is_verified_stored_and_delivered_to(
    settings, clock, azurite_connection, scratch_container
):
    files: dict[str, bytes] = {}
    ctx = Context.create(
        settings,
        clock,
        open_destination=lambda kind, secret, container, prefix: MemoryDestination(files, container, prefix),
    )
    destination = {
        "type": "s3",
        "bucket": "bucket-a",
        "prefix": "feed/",
        "region": "eu-west-1",
        "access_key_id": "AKIAMEMORYDESTINATION",
        "secret_access_key": "a-secret-only-the-destination-sees",
    }
    created = call(
        ctx, "integrations_create", integration_body("unused", "unused", destination=destination), account="acme"
    )
    assert created.status == 201, created.body
    assert created.body["destination"] == {
        "type": "s3",
        "bucket": "bucket-a",
        "prefix": "feed/",
        "access_key_id": "memory://bucket-a (key ***)",
    }
    assert created.body["verification"] == {
        "ok": True,
        "test_file": {"name": created.body["verification"]["test_file"]["name"], "deleted": True},
    }
    iid = created.body["id"]

    clock.advance(minutes=5)
    events = [
        {"event_name": "purchase", "timestamp": "2026-11-25T08:00:00Z", "event_params": {"price": n, "currency": "EUR"}}
        for n in range(3)
    ]
    assert (
        call(
            ctx,
            "ucd_upsert",
            {"users": [{"user_id": "u1", "attributes": {"email": "a@example.com"}, "events": events}]},
            account="acme",
        ).status
        == 200
    )
    clock.set(T0 + timedelta(hours=1, minutes=3))
    assert tick(ctx)["worker"]["windows_exported"] == 1

    window = Window(T0, T0 + timedelta(hours=1))
    path = window_path("feed/", "acme", iid, window)
    assert list(files) == [path]
    azure = AzureBlobDestination(azurite_connection, scratch_container.container_name, "feed/")
    integration = ctx.repo.get("acme", iid)
    export_window(ctx.ucd, "acme", iid, integration.selection, window, azure)
    assert scratch_container.download_blob(path).readall() == files[path], "the same bytes in any destination"
    assert files[path].count(b"\r\n") == 4, "the header and three rows"


def test_an_export_failing_before_its_commit_abandons_its_blocks_and_shows_nothing():
    class FailingUcd:
        def read_from(self, *args, **kwargs):
            yield from ()
            raise ConnectionError("the store went away mid-window")

    files: dict[str, bytes] = {}
    destination = MemoryDestination(files, "bucket-a", "feed/")
    window = Window(T0, T0 + timedelta(hours=1))
    with pytest.raises(ConnectionError):
        export_window(
            FailingUcd(), "acme", "i1", Selection((EventSelection("purchase"),)), window, destination, block_bytes=8
        )
    assert destination.abandoned == [window_path("feed/", "acme", "i1", window)]
    assert files == {}, "nothing is visible: no commit"
