"""Blocks cut at read positions (exporter/export/blocks.py `AlignedBlocks`): pure, no server.

Every block ends where the caller marked a position, holds at least `block_bytes` (but the last),
and the cuts depend on the bytes and marks alone; with `min_last_block`, a short tail is merged into
the block before it (S3's 5 MiB minimum for a part that does not end the file).
"""

from __future__ import annotations

import random

import pytest

from exporter.export.blocks import AlignedBlocks
from exporter.ucd.reader import ReadPosition

DATA = bytes(i % 251 for i in range(5_000))


def cut(block_bytes: int, seed: int, min_last_block: int = 0, data: bytes = DATA):
    """Write `data` in random pieces, marking a position after each; the blocks and their marks."""
    blocks: list = []
    sink = AlignedBlocks(lambda b, m: blocks.append((bytes(b), m)), block_bytes, min_last_block=min_last_block)
    rng, done, rows = random.Random(seed), 0, 0
    while done < len(data):
        piece = data[done : done + rng.randint(1, 97)]
        sink.write(piece)
        done, rows = done + len(piece), rows + 1
        sink.mark(ReadPosition("segment", rows), rows)
    sink.finish(ReadPosition("segment", rows), rows)
    return blocks


@pytest.mark.parametrize("block_bytes", [1, 64, 1000])
def test_blocks_end_at_marks_and_hold_at_least_block_bytes(block_bytes):
    blocks = cut(block_bytes, seed=1)
    assert b"".join(b for b, _ in blocks) == DATA
    assert all(len(b) >= block_bytes for b, _ in blocks[:-1])
    assert [m.bytes for _, m in blocks] == [sum(len(b) for b, _ in blocks[: i + 1]) for i in range(len(blocks))]
    assert blocks[-1][1].position == ReadPosition("segment", blocks[-1][1].rows)


def test_the_cuts_are_the_same_for_the_same_bytes_and_marks():
    assert cut(300, seed=7) == cut(300, seed=7)


def test_a_short_tail_is_merged_into_the_block_before_it():
    plain = cut(1000, seed=3)
    tail = len(plain[-1][0])
    merged = cut(1000, seed=3, min_last_block=tail + 1)  # the tail is now too short to stand alone
    assert b"".join(b for b, _ in merged) == DATA
    assert [b for b, _ in merged[:-1]] == [b for b, _ in plain[:-2]], "the same cuts before the end"
    assert merged[-1][0] == plain[-2][0] + plain[-1][0] and merged[-1][1] == plain[-1][1]


@pytest.mark.parametrize(("block_bytes", "min_last_block"), [(1, 0), (64, 0), (1000, 0), (1000, 400), (10_000, 0)])
def test_only_the_file_s_last_block_is_marked_last(block_bytes, min_last_block):
    blocks = cut(block_bytes, seed=5, min_last_block=min_last_block)
    assert [m.last for _, m in blocks] == [False] * (len(blocks) - 1) + [True]


def test_a_block_cut_at_the_file_s_end_is_the_last_and_one_cut_before_a_stop_is_handed_on():
    blocks: list = []
    sink = AlignedBlocks(lambda b, m: blocks.append((bytes(b), m)), 10)
    sink.write(b"x" * 10)
    assert sink.mark(ReadPosition("s", 1), 1) and blocks == [], "cut, held until a byte follows"
    sink.finish(ReadPosition("s", 1), 1)
    assert [(b, m.last) for b, m in blocks] == [(b"x" * 10, True)], "nothing followed: the last block"

    blocks.clear()
    sink = AlignedBlocks(lambda b, m: blocks.append((bytes(b), m)), 10)
    sink.write(b"y" * 12)
    assert sink.mark(ReadPosition("s", 1), 1)
    sink.release()  # the export stops after it
    assert [(b, m.last) for b, m in blocks] == [(b"y" * 12, False)]


def test_a_block_handed_back_holds_a_later_block_and_the_cuts_are_the_same():
    blocks: list = []
    sink = AlignedBlocks(lambda b, m: blocks.append((b, m)), 1000)
    handed_on: list = []
    memory: list = []  # every block object handed on, kept alive: a reused one appears again
    rng, done, rows = random.Random(11), 0, 0
    while done < len(DATA):
        piece = DATA[done : done + rng.randint(1, 97)]
        sink.write(piece)
        done, rows = done + len(piece), rows + 1
        sink.mark(ReadPosition("segment", rows), rows)
        while blocks:
            block, mark = blocks.pop(0)
            handed_on.append((bytes(block), mark))
            memory.append(block)
            sink.spares.give(block)  # staged: its memory is the sink's again
    sink.finish(ReadPosition("segment", rows), rows)
    handed_on += [(bytes(b), m) for b, m in blocks]
    assert handed_on == cut(1000, seed=11), "the same blocks as with fresh memory for each"
    assert len({id(b) for b in memory}) <= 3 < len(memory), "the blocks were written into memory handed back"
