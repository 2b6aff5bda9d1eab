"""What a measurement reads of processes: its own peak RSS, and the CPU time of the server it measures against."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """This process's peak RSS in MB.

    `ru_maxrss` (RUSAGE_SELF) survives execve on Linux: a child started by a big parent reports at least
    the parent's RSS at fork time. VmHWM is the high-water mark of this process's own address space,
    so it is preferred where /proc exists; ru_maxrss is the fallback (and is reported alongside).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def server_cpu(spec: dict[str, Any]) -> float:
    """CPU seconds Azurite (`server_pid`) has used so far, all its threads; 0 where /proc cannot tell."""
    try:
        fields = Path(f"/proc/{spec['server_pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except (KeyError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
