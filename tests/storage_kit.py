"""The app's storage as tests get it: each resource created when the test first uses it.

`Storage.ensure()` creates twelve tables, three queues and two containers, about seventeen calls to Azurite
for every test's context, while a test touches a handful of them. `LazyStorage` creates each on its first
use (`table`, `queue`, `ucd_container`, `staging_container` are the app's only ways to them; a table on the
first call of its client), so what the app reads or writes exists exactly as after `ensure()`. conftest.py's `settings` fixture shares one as the
test's Storage (`adopt_storage`), and the test's end closes it (`forget_storage`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from exporter.storage import Storage


class _TableOnFirstUse:
    """A TableClient whose table is created on the first use of any of its attributes (a context holds the
    clients of eight tables from its start, and a test uses a few): then it is the client itself."""

    def __init__(self, client: TableClient, create: Callable[[], None]) -> None:
        # Names of its own no client attribute has (a test may reach into the client's `_client`).
        self._lazy_table_client = client
        self._lazy_table_create = create

    def __getattr__(self, attribute: str):
        self._lazy_table_create()
        return getattr(self._lazy_table_client, attribute)


@dataclass
class LazyStorage(Storage):
    """A Storage whose `ensure()` creates nothing: each table, queue and container is created on first use."""

    _made: set[tuple[str, str]] = field(default_factory=set)
    _making: threading.Lock = field(default_factory=threading.Lock)
    _tables_on_first_use: dict[str, _TableOnFirstUse] = field(default_factory=dict)

    def ensure(self) -> Storage:
        return self

    def _once(self, kind: str, name: str, create: Callable[[], object]) -> None:
        if (kind, name) in self._made:
            return
        with self._making:
            if (kind, name) in self._made:
                return
            try:
                create()
            except ResourceExistsError:
                pass
            self._made.add((kind, name))

    def table(self, name: str) -> TableClient:
        client = super().table(name)
        with self._making:
            lazy = self._tables_on_first_use.get(name)
            if lazy is None:
                create = lambda: self._once("table", name, lambda: self.table_service.create_table(client.table_name))  # noqa: E731
                lazy = self._tables_on_first_use[name] = _TableOnFirstUse(client, create)
        return cast(TableClient, lazy)

    def queue(self, name: str | None = None) -> QueueClient:
        client = super().queue(name)
        self._once("queue", client.queue_name, client.create_queue)
        return client

    def ucd_container(self) -> ContainerClient:
        container = super().ucd_container()
        self._once("container", container.container_name, container.create_container)
        return container

    def staging_container(self) -> ContainerClient:
        container = super().staging_container()
        self._once("container", container.container_name, container.create_container)
        return container
