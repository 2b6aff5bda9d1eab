"""A SHA-256 whose state is saved and continued (exporter/export/sha256.py): pure, no server."""

from __future__ import annotations

import hashlib
import random

import pytest

from exporter.export import sha256
from exporter.export.manifest import StreamDigest
from exporter.export.sha256 import STATE_BYTES, Sha256, UnrestorableState

DATA = random.Random(3).randbytes(300_000)


def test_this_machine_can_save_a_sha256_state():
    assert sha256.available(), "OpenSSL's SHA256_CTX functions, as linked by Python's hashlib"


@pytest.mark.parametrize("seed", range(10))
def test_a_hash_saved_and_continued_anywhere_equals_one_in_one_go(seed):
    rng, hasher, done = random.Random(seed), Sha256(), 0
    while done < len(DATA):
        piece = DATA[done : done + rng.choice([1, 63, 64, 65, rng.randint(1, 50_000)])]
        hasher.update(rng.choice([bytes, bytearray, memoryview])(piece))
        done += len(piece)
        if rng.random() < 0.5:
            state = hasher.state()
            assert len(state) == STATE_BYTES
            hasher = Sha256(state)  # another process: only the bytes go across
        assert hasher.hexdigest() == hashlib.sha256(DATA[:done]).hexdigest()


def test_a_stream_digest_continues_from_its_state():
    first = StreamDigest()
    first.add(DATA[:1000])
    second = StreamDigest(first.state())
    second.add(DATA[1000:])
    assert second.hexdigest() == hashlib.sha256(DATA).hexdigest()


def test_a_state_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="112 bytes"):
        Sha256(b"\0" * 100)


def a_state_after(data: bytes) -> bytes:
    hasher = Sha256()
    hasher.update(data)
    return hasher.state()


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: b"".join(s[i : i + 4][::-1] for i in range(0, len(s), 4)),  # saved by a host of the other byte order
        lambda s: s[:32] + (1234 * 8).to_bytes(4, "little") + s[36:],  # damaged: its bit count is another length's
        lambda s: s[:-4] + (64).to_bytes(4, "little"),  # another OpenSSL's layout: no digest length where ours has it
    ],
    ids=["byte order", "count", "layout"],
)
def test_a_state_this_machine_cannot_continue_is_refused_not_continued_into_a_wrong_digest(corrupt):
    state = a_state_after(DATA[:1000])
    assert Sha256(state, 1000).hexdigest() == hashlib.sha256(DATA[:1000]).hexdigest()
    with pytest.raises(UnrestorableState):
        Sha256(corrupt(state), 1000)


def test_a_state_is_checked_against_the_bytes_recorded():
    state = a_state_after(DATA[:1000])
    with pytest.raises(UnrestorableState, match="after 1000 bytes, not the 1064 recorded"):
        Sha256(state, 1064)  # the same partial block, another count: only the recorded length tells
    with pytest.raises(UnrestorableState):
        StreamDigest(state, 999)
