"""SHA-256 whose state can be saved and continued in another process: a manifest's hash of a file
exported over several invocations (docs/architecture.md, "Windows of any size").

`hashlib` cannot save a hash's state. OpenSSL's `SHA256_CTX`, the struct that its low-level
`SHA256_Init` / `SHA256_Update` / `SHA256_Final` work on, is plain memory (8 chaining words, the bit
count, the partial block, 112 bytes), so its bytes are the state. Those functions are deprecated in
OpenSSL 3 in favour of EVP, which hides the state, but the libcrypto that Python's own `hashlib`
links still exports them. Before the first use a self-test saves and continues a hash and compares
it with `hashlib`; where the functions are missing or the test fails, `available()` is False and a
file with a manifest is exported whole in one invocation, as it was before.

A state saved on another host need not fit this one (another OpenSSL's struct layout, byte order, or a
damaged record): `Sha256(state, length)` checks what the struct says of itself (its digest length, its
bit count against the bytes hashed, the partial block's fill) and raises `UnrestorableState` rather
than continue a hash into a wrong digest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import struct
from collections.abc import Iterator

STATE_BYTES = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len, 32 bits each
LAYOUT = struct.Struct("=8I2I16I2I")  # native order, as the struct lies in memory
DIGEST_BYTES = 32  # SHA256_CTX.md_len, as SHA256_Init sets it
BLOCK_BYTES = 64


class UnrestorableState(ValueError):
    """A saved SHA-256 state this machine cannot continue (saved elsewhere, or damaged)."""


class Sha256:
    """A SHA-256 hasher whose `state()` continues in another process (`Sha256(state)`).

    `length`: the bytes hashed into `state`, if known, checked against the state's own count.
    """

    def __init__(self, state: bytes = b"", length: int | None = None):
        lib = _libcrypto()
        if lib is None:
            raise RuntimeError("OpenSSL's SHA256_CTX functions are not available here")
        self._lib = lib
        if state:
            check_state(state, length)
            self._ctx = ctypes.create_string_buffer(bytes(state), STATE_BYTES)
        else:
            self._ctx = ctypes.create_string_buffer(STATE_BYTES)
            lib.SHA256_Init(self._ctx)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # ctypes drops the GIL around the call: other threads run while a block is hashed.
        self._lib.SHA256_Update(self._ctx, _pointer(data), ctypes.c_size_t(len(data)))

    def state(self) -> bytes:
        return self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of the bytes so far (the state is kept: more may follow)."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, STATE_BYTES)
        digest = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(digest, ctx)
        return digest.raw.hex()


def check_state(state: bytes, length: int | None = None) -> None:
    """Raise UnrestorableState unless `state` is a SHA256_CTX of this machine's layout (after `length` bytes)."""
    if len(state) != STATE_BYTES:
        raise UnrestorableState(f"a SHA-256 state is {STATE_BYTES} bytes, not {len(state)}")
    fields = LAYOUT.unpack(state)
    low, high, num, md_len = fields[8], fields[9], fields[26], fields[27]
    hashed = (high << 32 | low) // 8
    if md_len != DIGEST_BYTES or low % 8 or num != hashed % BLOCK_BYTES:
        raise UnrestorableState("a SHA-256 state not of this machine's OpenSSL layout (or damaged)")
    if length is not None and hashed != length:
        raise UnrestorableState(f"a SHA-256 state after {hashed} bytes, not the {length} recorded")


def available() -> bool:
    """Whether a SHA-256 state can be saved and continued on this machine."""
    return _libcrypto() is not None


def _pointer(data: bytes | bytearray | memoryview) -> bytes | ctypes.Array[ctypes.c_char]:
    if isinstance(data, bytes):
        return data
    view = memoryview(data)
    if view.readonly:
        return bytes(view)
    return (ctypes.c_char * view.nbytes).from_buffer(view)


@functools.cache
def _libcrypto() -> ctypes.CDLL | None:
    lib = next(filter(None, map(_load, _candidates())), None)
    if lib is None:
        return None
    lib.SHA256_Init.argtypes = [ctypes.c_void_p]
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return lib if _self_test(lib) else None


def _candidates() -> Iterator[str]:
    """The libcrypto that hashlib loaded (a host without ldconfig still maps it), then the linker's names.

    Lazily: the linker's name is looked up (`find_library` runs `ldconfig -p`, a process) only if no
    mapped library will do, which is a process's first export paying a fork for nothing.
    """
    import _hashlib  # noqa: F401 - maps libcrypto into this process

    try:
        with open("/proc/self/maps") as maps:
            mapped = [line.split()[-1] for line in maps if "libcrypto" in line]
    except OSError:
        mapped = []
    yield from dict.fromkeys(mapped)
    found = ctypes.util.find_library("crypto")
    yield from [name for name in (found, "libcrypto.so.3") if name and name not in mapped]


def _load(name: str) -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    return lib if all(hasattr(lib, f) for f in ("SHA256_Init", "SHA256_Update", "SHA256_Final")) else None


def _self_test(lib: ctypes.CDLL) -> bool:
    """A hash saved mid-block and continued from a copy of its bytes equals hashlib's."""
    data = bytes(range(256)) * 5
    ctx = ctypes.create_string_buffer(STATE_BYTES)
    lib.SHA256_Init(ctx)
    lib.SHA256_Update(ctx, data[:100], ctypes.c_size_t(100))
    moved = ctypes.create_string_buffer(ctx.raw, STATE_BYTES)
    lib.SHA256_Update(moved, data[100:], ctypes.c_size_t(len(data) - 100))
    digest = ctypes.create_string_buffer(32)
    lib.SHA256_Final(digest, moved)
    return digest.raw == hashlib.sha256(data).digest()
