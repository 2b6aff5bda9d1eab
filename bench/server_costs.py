"""`python -m bench.server_costs`: what each kind of storage call costs Azurite's own CPU, on a private Azurite.

The export's time against its I/O floor (bench/README.md) is Azurite's time: its main thread is busy
for nearly the whole export and the whole floor, so each call the export makes beyond the floor's
downloads and block uploads costs about its server CPU. This prints, per call, the server's CPU time
(from /proc, all its threads) and the wall time as the client sees it: a Table read and write, a
listing, and a block staged (per MiB, at several block sizes).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from exporter.destinations.azure_blob import block_id
from exporter.local.devstorage import start_azurite

from .process import server_cpu

MiB = 1024 * 1024


def per_call(spec: dict[str, int], call: Callable[[], object], times: int) -> tuple[float, float]:
    """Azurite's CPU and the client's wall time per call, in ms, after a few warm-up calls."""
    for _ in range(min(times, 10)):
        call()
    cpu, wall = server_cpu(spec), time.perf_counter()
    for _ in range(times):
        call()
    return (server_cpu(spec) - cpu) / times * 1000, (time.perf_counter() - wall) / times * 1000


def _stager(blob, mib: int) -> Callable[[], object]:
    """Stages a block of `mib` MiB under the next block id at each call."""
    data, count = os.urandom(mib * MiB), iter(range(10**6))
    return lambda: blob.stage_block(block_id(next(count)), data, length=len(data))


def main(argv: list[str]) -> int:
    azurite = start_azurite()
    spec = {"server_pid": azurite.process.pid}
    try:
        table = TableServiceClient.from_connection_string(azurite.connection_string).create_table("costs")
        entity = {"PartitionKey": "p", "RowKey": "r", "selection": "x" * 400, "status": "exporting", "rows": 1}
        table.upsert_entity(entity)

        def missing() -> None:
            try:
                table.get_entity("p", "absent")
            except ResourceNotFoundError:
                pass

        container = BlobServiceClient.from_connection_string(azurite.connection_string).create_container("costs")
        for i in range(50):
            container.upload_blob(f"acme/events/2026/11/28/02/{i:05d}.arrow", b"x" * 1000)
        prefix = "acme/events/2026/11/28/02/"
        print(f"{'call':36} {'Azurite CPU':>14} {'client wall':>14}")
        for label, call in (
            ("Table: read an entity", lambda: table.get_entity("p", "r")),
            ("Table: read a missing entity", missing),
            ("Table: write an entity", lambda: table.upsert_entity(entity, mode=UpdateMode.REPLACE)),
            ("Blob: list a prefix of 50 blobs", lambda: list(container.list_blobs(name_starts_with=prefix))),
        ):
            cpu, wall = per_call(spec, call, 200 if label.startswith("Table") else 50)
            print(f"{label:36} {cpu:11.2f} ms {wall:11.2f} ms")
        for mib in (1, 4, 8, 16):
            cpu, wall = per_call(spec, _stager(container.get_blob_client(f"staged-{mib}"), mib), 64 // mib)
            print(f"{f'Blob: stage a block of {mib} MiB, per MiB':36} {cpu / mib:11.2f} ms {wall / mib:11.2f} ms")
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
