"""`python -m bench.gzip_members [EVENTS]`: what gzip members cost a csv.gz file, by segment size and pooling.

The bench's rows (`bench.data.segment_table`, all columns, 60,000 events by default) are cut into
segments of n events, each encoded as the store writes it (its stored size, `SegmentRef.size`), and
the CSV rows in segment order are gzipped as the export does (`GzipMembers`): one member per segment
(the rule before pooling), and members that end at a segment's end once they cover `least` stored
bytes (`member_groups`). Printed per row: the file's bytes over one member's, the segments per member,
and the compressed bytes of a member (how far a block or a part boundary may move). No storage involved.
"""

from __future__ import annotations

import io
import sys

import pyarrow as pa
import pyarrow.csv as pacsv

from exporter.export.formats.compress import MEMBER_SEGMENT_BYTES, GzipMembers, member_groups
from exporter.ucd.segments import encode_table

from . import data

SEGMENT_EVENTS = [10, 30, 100, 1_000]
LEASTS = [0, 64 * 1024, 256 * 1024, 1024 * 1024, 2048 * 1024]  # 0: a member per segment (the rule before)


class Counter:
    """A write-only file that only counts."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data) -> int:
        self.bytes += memoryview(data).nbytes
        return memoryview(data).nbytes


def segments(events: int, n: int) -> tuple[list[int], list[bytes]]:
    """`events` cut into segments of `n`: each one's stored size and its CSV rows."""
    sizes, rows = [], []
    for index in range(events // n):
        table = data.segment_table(index, n, int(data.T0.timestamp() * 1000))
        sizes.append(len(encode_table(table)))
        out = io.BytesIO()
        pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False))
        rows.append(out.getvalue())
    return sizes, rows


def gzipped(rows: list[bytes], groups: list[int]) -> tuple[int, int]:
    """The gzip file's bytes with a member per group of segments, and its members."""
    counter = Counter()
    members = GzipMembers(counter)
    for i, chunk in enumerate(rows):
        if i and groups[i] != groups[i - 1]:
            members.end_member()
        members.write(chunk)
    members.end_member()
    return counter.bytes, groups[-1] + 1 if groups else 0


def main(events: int) -> None:
    print(f"{events:,} events; chosen MEMBER_SEGMENT_BYTES = {MEMBER_SEGMENT_BYTES:,}")
    print(f"{'events/seg':>10} {'seg bytes':>9} {'least':>9} {'overhead':>9} {'segs/member':>11} {'member KiB':>10}")
    for n in SEGMENT_EVENTS:
        sizes, rows = segments(events, n)
        one, _ = gzipped(rows, [0] * len(rows))
        for least in LEASTS:
            size, count = gzipped(rows, member_groups(sizes, least) if least else list(range(len(rows))))
            print(
                f"{n:>10,} {sum(sizes) // len(sizes):>9,} {least // 1024:>8}K {100 * (size / one - 1):>8.2f}%"
                f" {len(rows) / count:>11.1f} {size / count / 1024:>10.1f}"
            )


if __name__ == "__main__":
    pa.set_cpu_count(1)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60_000)
