"""SDK objects a destination builds from a customer's key, kept in this process between one integration's jobs.

Building them is most of a job's fixed CPU (docs/benchmarks.md, "start cost"): google-auth parses a service
account's RSA key (~50 ms) and then fetches a token (a round trip). A window's export and its follow-ups reuse
them instead. Only GCS keeps anything today: an S3 client is pinned to its egress guard (the key would have to
hold the guard too), and Azure's client costs a few milliseconds.

Kept per integration, never across: the key is the account and the integration the destination is opened
for (exporter/identity.py, `opening_for`), the destination type, and a SHA-256 of the credential material
(a changed key is a new entry). Outside an opening, or in verification's, nothing is kept. The digest is never shown: `KeptKey`'s
repr leaves it out, so a key that reaches a log or an exception carries no trace of a secret.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..identity import _opening  # the opening in progress, or None (identity.current_opening raises)

KEPT = 64  # entries per process; the least recently used goes first
# Verification's opening (exporter/integrations/service.py): it builds afresh, so that a key revoked since
# its last use is found so (a kept credential would answer with a token it fetched before).
VERIFYING = "verify"


@dataclass(frozen=True)
class KeptKey:
    account: str
    integration: str  # the opening's session: an integration id
    kind: str
    digest: str = field(repr=False)


def kept_key(kind: str, material: Mapping[str, object]) -> KeptKey | None:
    """The key of an object built from `material` for the opening in progress (None: not inside an opening)."""
    opening = _opening.get()
    if opening is None or opening.session == VERIFYING:
        return None
    text = json.dumps(dict(material), sort_keys=True, separators=(",", ":"), default=str)
    return KeptKey(opening.account, opening.session, kind, hashlib.sha256(text.encode()).hexdigest())


class KeptClients:
    """At most `limit` built objects, by `KeptKey`; built outside the lock (another tenant's build never waits)."""

    def __init__(self, limit: int = KEPT):
        self._limit = limit
        self._kept: OrderedDict[KeptKey, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: KeptKey | None, build: Callable[[], Any]) -> Any:
        if key is None:
            return build()
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        built = build()  # a failure is raised and nothing is kept
        with self._lock:
            kept = self._kept.setdefault(key, built)  # two jobs built it at once: the first kept serves both
            self._kept.move_to_end(key)
            while len(self._kept) > self._limit:
                self._kept.popitem(last=False)
            return kept

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


KEPT_CLIENTS = KeptClients()
