"""Thrift's compact protocol, generically: a struct's bytes ↔ a tree of (field id, type, value), byte-exact.

Parquet's footer (FileMetaData and its RowGroups) is a Thrift struct in this protocol. A resumable
Parquet file (exporter/export/formats/parquet.py) takes each row group's metadata from a small file
pyarrow wrote for that group alone, moves its file offsets to where the group lands in the whole
file, and writes one footer of them all. Only those few fields are read or changed; every other field,
known to this module or not, is kept as it was read and written back as the same bytes (a writer
encodes a struct one way only: the shortest field headers and varints, which is what this writes).
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

# The compact protocol's type codes (a struct field's header, a list's element type).
TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID = range(1, 14)
INTEGERS = (BYTE, I16, I32, I64)
STOP = 0


@dataclass
class Struct:
    """A struct's fields in the order they were read (or set): ids, types, values."""

    fields: list[Field] = field(default_factory=list)

    def get(self, field_id: int) -> Value | None:
        """The value of the field, or None if the struct has none."""
        for f in self.fields:
            if f.id == field_id:
                return f.value
        return None

    def put(self, field_id: int, kind: int, value: Value) -> None:
        """Set a field's value, in place if present, else appended (so a struct read keeps its order)."""
        for f in self.fields:
            if f.id == field_id:
                f.kind, f.value = kind, value
                return
        self.fields.append(Field(field_id, kind, value))

    def struct(self, field_id: int) -> Struct | None:
        value = self.get(field_id)
        return value if isinstance(value, Struct) else None

    def structs(self, field_id: int) -> list[Struct]:
        """A list-of-structs field's structs ([] if absent)."""
        value = self.get(field_id)
        return [v for v in value.items if isinstance(v, Struct)] if isinstance(value, List) else []


@dataclass
class Field:
    id: int
    kind: int  # TRUE/FALSE for a bool (the type code carries the value), else the value's type code
    value: Value


@dataclass
class List:
    """A list or set: its elements' type code and the elements (a bool element as its raw byte)."""

    element: int
    items: list[Value]
    kind: int = LIST
    size: int | None = None  # the element count, when an item is an Encoded run of several structs


@dataclass
class Map:
    key: int
    value: int
    pairs: list[tuple[Value, Value]]


@dataclass(frozen=True)
class Encoded:
    """A struct already in its compact-protocol bytes: written as they are (a list of many, without parsing them)."""

    data: bytes


Value = Union[bool, int, bytes, Struct, List, Map, Encoded]  # noqa: UP007 - a runtime alias, used before the classes are bound


# ------------------------------------------------------------------ reading


class Reader:
    """Reads compact-protocol values from a buffer, from `pos` on."""

    def __init__(self, data: bytes | memoryview, pos: int = 0):
        self.data = memoryview(data)
        self.pos = pos

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def raw(self, size: int) -> bytes:
        out = bytes(self.data[self.pos : self.pos + size])
        if len(out) != size:
            raise ValueError("thrift: truncated value")
        self.pos += size
        return out

    def struct(self) -> Struct:
        fields: list[Field] = []
        last = 0
        while True:
            header = self.raw(1)[0]
            if header == STOP:
                return Struct(fields)
            kind, delta = header & 0x0F, header >> 4
            last = last + delta if delta else self.zigzag()
            value: Value = kind == TRUE if kind in (TRUE, FALSE) else self.value(kind)
            fields.append(Field(last, kind, value))

    def value(self, kind: int) -> Value:
        if kind in (TRUE, FALSE):  # a bool element of a list: one byte of its own
            return self.raw(1)[0]
        if kind == BYTE:
            return int.from_bytes(self.raw(1), "little", signed=True)
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            return self.raw(8)  # kept as its bytes: exact whatever the value (NaN payloads included)
        if kind == BINARY:
            return self.raw(self.varint())
        if kind == UUID:
            return self.raw(16)
        if kind in (LIST, SET):
            header = self.raw(1)[0]
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return List(element, [self.value(element) for _ in range(size)], kind)
        if kind == MAP:
            size = self.varint()
            if not size:
                return Map(0, 0, [])
            types = self.raw(1)[0]
            key, val = types >> 4, types & 0x0F
            return Map(key, val, [(self.value(key), self.value(val)) for _ in range(size)])
        if kind == STRUCT:
            return self.struct()
        raise ValueError(f"thrift: unknown type code {kind}")


def read_struct(data: bytes | memoryview) -> Struct:
    """The struct encoded at the start of `data`."""
    return Reader(data).struct()


# ------------------------------------------------------------------ writing


def _varint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def write_struct(struct: Struct, out: bytearray | None = None) -> bytearray:
    """The struct's compact-protocol bytes (appended to `out`, if given)."""
    out = bytearray() if out is None else out
    last = 0
    for f in struct.fields:
        kind = (TRUE if f.value else FALSE) if f.kind in (TRUE, FALSE) else f.kind
        if 0 < f.id - last <= 15:
            out.append((f.id - last) << 4 | kind)
        else:
            out.append(kind)
            _zigzag(f.id, out)
        last = f.id
        if kind not in (TRUE, FALSE):
            _write_value(kind, f.value, out)
    out.append(STOP)
    return out


def _write_value(kind: int, value: Value, out: bytearray) -> None:
    if isinstance(value, Struct):
        write_struct(value, out)
    elif isinstance(value, Encoded):
        out += value.data
    elif isinstance(value, List):
        _write_list(value, out)
    elif isinstance(value, Map):
        _write_map(value, out)
    elif isinstance(value, bytes):
        if kind == BINARY:
            _varint(len(value), out)
        out += value  # a double's or a UUID's bytes as read
    elif kind in (TRUE, FALSE):
        out.append(int(value))  # a list's bool element: its raw byte
    elif kind == BYTE:
        out += int(value).to_bytes(1, "little", signed=True)
    elif kind in (I16, I32, I64):
        _zigzag(int(value), out)
    else:
        raise ValueError(f"thrift: type code {kind} does not hold {type(value).__name__}")


def _write_list(value: List, out: bytearray) -> None:
    size = len(value.items) if value.size is None else value.size
    if size < 15:
        out.append(size << 4 | value.element)
    else:
        out.append(0xF0 | value.element)
        _varint(size, out)
    for item in value.items:
        _write_value(value.element, item, out)


def _write_map(value: Map, out: bytearray) -> None:
    _varint(len(value.pairs), out)
    if not value.pairs:
        return
    out.append(value.key << 4 | value.value)
    for key, val in value.pairs:
        _write_value(value.key, key, out)
        _write_value(value.value, val, out)
