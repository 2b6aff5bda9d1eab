"""Azurite for local runs and tests: started from node_modules on free ports, stopped afterwards.

`python -m exporter.local.devstorage` starts one and prints its connection string (see --help).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Azurite's well-known development account: public, the same on every machine, and never a
# customer's (customer destinations refuse `UseDevelopmentStorage=true`, see destinations/azure_blob.py).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(blob: int, queue: int, table: int) -> str:
    """Explicit endpoints: `UseDevelopmentStorage=true` would mean the default ports."""
    base = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint={base}:{blob}/{DEV_ACCOUNT};QueueEndpoint={base}:{queue}/{DEV_ACCOUNT};"
        f"TableEndpoint={base}:{table}/{DEV_ACCOUNT};"
    )


@dataclass
class Azurite:
    process: subprocess.Popen
    ports: tuple[int, int, int]

    @property
    def connection_string(self) -> str:
        return connection_string(*self.ports)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def azurite_binary() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise RuntimeError("Azurite is not installed: run `npm ci` in the project folder (see README)")


def start_azurite(timeout: float = 30) -> Azurite:
    """Start an in-memory Azurite on three free ports and wait until it answers."""
    ports = (free_port(), free_port(), free_port())
    cmd = [
        azurite_binary(),
        "--silent",
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--blobHost",
        "127.0.0.1",
        "--queueHost",
        "127.0.0.1",
        "--tableHost",
        "127.0.0.1",
        "--blobPort",
        str(ports[0]),
        "--queuePort",
        str(ports[1]),
        "--tablePort",
        str(ports[2]),
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"Azurite exited at start: {err[-2000:]}")
        if all(_listening(p) for p in ports):
            return Azurite(process, ports)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("Azurite did not start listening in time")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str] | None = None) -> int:
    """`python -m exporter.local.devstorage`: start Azurite, print its connection string, run until stopped."""
    import argparse
    import signal
    import sys

    argparse.ArgumentParser(
        prog="python -m exporter.local.devstorage",
        description="Start an in-memory Azurite on three free ports, print its connection string (one line;\n"
        "use it as AzureWebJobsStorage) and run until interrupted or terminated.",
        epilog="example:\n  python -m exporter.local.devstorage > azurite.txt &\n"
        '  export AzureWebJobsStorage="$(head -n 1 azurite.txt)"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).parse_args(argv)
    azurite = start_azurite()
    print(azurite.connection_string, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        azurite.process.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
