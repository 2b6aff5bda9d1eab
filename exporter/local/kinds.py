"""Each destination type's local tools: the private servers it needs and a customer's container or bucket on
them, for the demo, the console demo and the tests' kits (never deployed).

A type names its `LocalKind` on its `DestinationKind` (`local="exporter.local.demotargets:S3"`): a name, not
an import, so the deployed code never loads these tools, and a new type brings its local tools with its one
registration line.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..destinations import destination_kind
from .cloudservers import GcsEmulator, MotoServer, TokenEndpoint, start_gcs_emulator, start_moto

S = TypeVar("S")


class Servers:
    """The local servers of one run, each started on first use and stopped by `stop()`; or `given` (started
    elsewhere: the tests' session fixtures), then never stopped here."""

    def __init__(self, azurite_connection: str, given: Mapping[str, Callable[[], Any]] | None = None):
        self.azurite_connection = azurite_connection
        self._given = dict(given or {})
        self._started: dict[str, Any] = {}
        self._stops: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def _server(self, name: str, start: Callable[[], S], stop: Callable[[S], None]) -> S:
        with self._lock:
            if name not in self._started:
                if name in self._given:
                    self._started[name] = self._given[name]()
                else:
                    server = start()
                    self._started[name] = server
                    self._stops.append(lambda: stop(server))
            found: S = self._started[name]
            return found

    def moto(self) -> MotoServer:
        return self._server("moto", start_moto, MotoServer.stop)

    def gcs(self) -> GcsEmulator:
        return self._server("gcs", start_gcs_emulator, GcsEmulator.stop)

    def tokens(self) -> TokenEndpoint:
        return self._server("tokens", lambda: TokenEndpoint().start(), TokenEndpoint.stop)

    def stop(self) -> None:
        """Stop what was started here, the last started first."""
        with self._lock:
            stops, self._stops = self._stops, []
            self._started.clear()
        for stop in reversed(stops):
            stop()


@dataclass
class Target:
    """A customer's container or bucket on a local server: the destination body that writes into it, its files."""

    kind: str
    where: str  # how the demo's narrative names it
    body: dict[str, Any]  # the destination body the demo verifies and creates
    names: Callable[[], list[str]]
    read: Callable[[str], bytes]
    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()


@dataclass(frozen=True)
class LocalKind:
    """A destination type's local tools: `open(servers, name, prefix)` creates the container or bucket `name`."""

    open: Callable[[Servers, str, str], Target]


def local_kind(kind: str) -> LocalKind:
    """The local tools the registered type `kind` names (a ValueError if it names none)."""
    path = destination_kind(kind).local
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"destination type {kind!r} names no local tools")
    found = getattr(importlib.import_module(module), attribute)
    if not isinstance(found, LocalKind):
        raise ValueError(f"{path} is not a LocalKind")
    return found


def open_target(kind: str, servers: Servers, name: str, prefix: str) -> Target:
    """A fresh container or bucket `name` of type `kind` on `servers`."""
    return local_kind(kind).open(servers, name, prefix)
