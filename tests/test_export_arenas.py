"""The worker process's malloc arenas (exporter/export/arenas.py): importing the export limits them to two,
so threads started invocation after invocation share them instead of each keeping freed memory of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Eight threads alive at once, each allocating through malloc (a Python object over 512 bytes), then glibc's own count of
# its arenas (`malloc_info` writes a <heap nr="..."> per arena).
COUNT_ARENAS = """
import ctypes, os, sys, tempfile, threading
if sys.argv[1] == "export":
    import exporter.export.runner
held, together = [], threading.Barrier(8)
def allocate():
    held.extend(bytes(4096) for _ in range(64))
    together.wait()  # every thread alive at once: none hands its arena on to the next
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as out:
    stream = ctypes.c_void_p(libc.fdopen(os.dup(out.fileno()), b"w"))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    out.seek(0)
    print(out.read().decode().count("<heap nr="))
"""


def arenas(imported: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", COUNT_ARENAS, imported], env=env, capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_threads_of_an_exporting_process_share_two_malloc_arenas():
    assert arenas("plain") > 2, "without the export, glibc gives the threads arenas of their own"
    assert arenas("export") <= 2


# A thread's arena left full of holes (three objects of four freed), then what release_freed gives back.
HOLES = """
import threading
from exporter.export.arenas import release_freed
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
kept = []
def fill():
    objects = [bytes(16384) for _ in range(12_000)]
    kept.extend(objects[::4])
filler = threading.Thread(target=fill)
filler.start()
filler.join()
before = rss_mb()
release_freed()
print(before, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")
def test_what_an_export_freed_is_given_back_to_the_system():
    done = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True)
    before, after = map(int, done.stdout.split())
    assert before - after > 60, f"RSS {before} MB before, {after} MB after"  # 140 MB of holes
