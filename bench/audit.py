"""`python -m bench.audit [MiB]`: the delivery audit's cost on a large window against a plain download.

Starts its own Azurite, commits one window-shaped file of MiB (default 256) random bytes, then in fresh
processes: (1) download, the file streamed through the destination's `read_file` and dropped; (2) the
audit's I/O (exporter/audit.py): the listing, the file's SHA-256 streamed as it is read, and the
comparison with a run record. Printed: seconds and peak RSS of each. The hash is what the audit adds;
the memory stays at a read piece (4 MiB, Azure's first range 32 MiB) whatever the file's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time

from azure.storage.blob import BlobServiceClient

from exporter.audit import Expected, Listing, compare, file_sha256
from exporter.destinations import open_destination
from exporter.local.devstorage import start_azurite
from exporter.runs import RunRecord, RunStatus

CONTAINER = "audit-bench"
NAME = "insider/acme_events_0123456789ab_1795860000_1795863600.csv"
BLOCK = 8 * 1024 * 1024


def _destination(connection: str):
    return open_destination("azure_blob", connection, CONTAINER, "insider/")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, connection: str, size: int, sha256: str) -> dict:
    destination = _destination(connection)
    baseline = _rss_mib()  # the interpreter and its imports, before any byte is read
    started = time.monotonic()
    if kind == "download":
        read = sum(len(piece) for piece in destination.read_file(NAME))
        assert read == size
    else:
        record = RunRecord(
            "acme", "0123456789ab", 1795860000, 1795863600, NAME, RunStatus.EXPORTED, 1, size, sha256=sha256
        )
        expected = Expected((record,), "insider/", "acme", "0123456789ab", 1795860000, 1795863600)
        sizes = {f.path: f.size for f in destination.list_files()}
        result = compare(expected, Listing(sizes, lambda path: file_sha256(destination, path)))
        assert result.ok, result.to_json()
    took = round(time.monotonic() - started, 2)
    return {"kind": kind, "seconds": took, "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(_rss_mib(), 1)}


def main(argv: list[str]) -> int:
    # The benchmark's destinations are on this machine over http (exporter/egress.py allows them only so).
    os.environ.setdefault("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "true")
    if argv and argv[0] == "--measure":
        print(json.dumps(measure(argv[1], argv[2], int(argv[3]), argv[4])))
        return 0
    mib = int(argv[0]) if argv else 256
    azurite = start_azurite()
    try:
        connection = azurite.connection_string
        BlobServiceClient.from_connection_string(connection).create_container(CONTAINER)
        destination, digest, blocks = _destination(connection), hashlib.sha256(), mib * 1024 * 1024 // BLOCK
        for index in range(blocks):
            block = os.urandom(BLOCK)
            digest.update(block)
            destination.stage_block(NAME, index, block)
        destination.commit_blocks(NAME, blocks)
        size = blocks * BLOCK
        print(f"file: {size // (1024 * 1024)} MiB")
        for kind in ("download", "audit"):
            args = [sys.executable, "-m", "bench.audit", "--measure", kind, connection, str(size), digest.hexdigest()]
            print(subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip())
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
