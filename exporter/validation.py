"""Checks of request values shared by every API operation: JSON bodies, objects, names, accounts.

Each raises InputError naming the field (a JSON path), so a refusal says exactly what to fix.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import TYPE_CHECKING, NoReturn

from .errors import InputError

if TYPE_CHECKING:  # the ucd package imports this module: its JSON value's type only
    from .ucd.values import Json

ACCOUNT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_NAME_LENGTH = 256
# Names become Table Storage keys (percent-encoded, at most 1 KiB), so they are bounded in UTF-8 bytes too.
MAX_NAME_BYTES = 256
# Event parameters and attributes may nest; a request needs far less than this, and much deeper
# input is only a way to exhaust the parser.
MAX_DEPTH = 32


def check_account(account: object, field_name: str = "account") -> str:
    """Account names go into file names, where `_` separates parts, so only [a-z0-9-] are allowed."""
    if not isinstance(account, str) or not ACCOUNT_RE.fullmatch(account):  # `$` alone lets "acme\n" through
        raise InputError(
            "must be 2-63 characters of lowercase letters, digits and '-', starting with a letter or digit",
            field=field_name,
        )
    return account


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf: refused like Infinity
        raise ValueError(f"{text} is out of range")
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Json]]) -> dict[str, Json]:
    """An object whose key repeats is ambiguous (which value wins differs between parsers): refused."""
    result: dict[str, Json] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def load_json_body(body: bytes | str, max_bytes: int = MAX_BODY_BYTES) -> Json:
    """Parse a request body; non-finite numbers, duplicate keys and nesting beyond MAX_DEPTH are refused."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise InputError(f"is {len(raw)} bytes; the limit is {max_bytes} bytes, split the request", field="body")
    if not raw.strip():
        raise InputError("is empty; a JSON object is required", field="body")
    too_deep = f"nests objects and lists deeper than {MAX_DEPTH} levels"
    try:
        value = json.loads(
            raw, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except _DuplicateKey as exc:
        raise InputError(str(exc), field="body") from None
    except RecursionError:
        raise InputError(too_deep, field="body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc})", field="body") from None
    if _nesting(value) > MAX_DEPTH:
        raise InputError(too_deep, field="body")
    return value


def _nesting(value: object) -> int:
    """How deeply objects and lists nest (iteratively: the value may be as deep as the parser allowed)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def check_name(value: object, field_name: str) -> str:
    """A user id, event name or key: non-empty, bounded, printable, storable as a Table key."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=field_name)
    if len(value) > MAX_NAME_LENGTH:
        raise InputError(f"is longer than {MAX_NAME_LENGTH} characters", field=field_name)
    if any(unicodedata.category(c) == "Cc" for c in value):  # C0, DEL and C1 (NEL...) alike
        raise InputError("must not contain control characters", field=field_name)
    check_text(value, field_name)
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise InputError(f"is longer than {MAX_NAME_BYTES} bytes in UTF-8", field=field_name)
    return value


def check_text(value: object, field_name: str) -> None:
    """Every string must be valid Unicode: a lone surrogate (JSON `\\ud800`) cannot be stored."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError("must be valid Unicode text (no unpaired surrogates)", field=field_name) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_fields(value: object, allowed: set[str], where: str, what: str = "a JSON object") -> dict[str, object]:
    """A JSON object with no field outside `allowed`; errors name the path."""
    if not isinstance(value, dict):
        raise InputError(f"must be {what}", field=where)
    unknown = set(value) - allowed
    if unknown:
        raise InputError("is not a known field", field=_member(where, sorted(unknown)[0]))
    return value


def _member(where: str, key: str) -> str:
    """The JSON path of an object's member: `where.key`, or `where["key"]` for a key that is empty or not a plain name."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return key if where == "body" else f"{where}.{key}"
    return f"{where}[{json.dumps(key)}]"
