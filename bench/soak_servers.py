"""The soak's servers: our Azurite and the customers' servers (an Azurite, moto for S3, a GCS emulator and
its token endpoint), a fault proxy in front of every storage endpoint, kills.

Every fault reaches the app through a proxy (`exporter.local.faultproxy`), so the product's real retry
and error paths run; the soak's own reads go to the servers directly.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from exporter.local.cloudservers import GcsEmulator, MotoServer, TokenEndpoint, start_gcs_emulator, start_moto
from exporter.local.devstorage import start_azurite
from exporter.local.faultproxy import ALL_KINDS, FaultProxy, Rule
from exporter.ucd.segments import SUFFIX as SEGMENT_SUFFIX

APP_SERVICES = ("Blob", "Queue", "Table")
DESTINATION_PROXIES = {"azure_blob": "dest_azure", "s3": "dest_s3", "gcs": "dest_gcs"}  # kind -> proxy name


def endpoint_of(connection: str, service: str) -> str:
    """`http://host:port` of one service endpoint in a connection string."""
    found = re.search(rf"{service}Endpoint=(https?://[^/;]+)", connection)
    if not found:
        raise ValueError(f"no {service}Endpoint in the connection string")
    return found[1]


def _pair(connection: str, key: str) -> str:
    return re.search(rf"{key}=([^;]+)", connection)[1]


@dataclass
class Servers:
    """The app's Azurite, the customers' servers of every destination type, and a fault proxy before each."""

    app: object
    customers: object  # the customers' Azurite
    moto: MotoServer
    gcs: GcsEmulator
    tokens: TokenEndpoint  # the token_uri of the customers' service-account keys (not storage: no proxy)
    proxies: dict[str, FaultProxy]
    app_direct: str  # the app's storage, no proxy: the soak's own reads and the management calls
    app_faulty: str  # the app's storage through the proxies: what the workers use
    customers_direct: str  # the customers' blob service, no proxy: the soak's reader
    customers_faulty: str  # what Azure integrations are given (BlobEndpoint is the proxy)
    rate: float = 0.0
    kinds: tuple[str, ...] = ALL_KINDS

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        for proxy in self.proxies.values():
            proxy.randomly(rate, self.kinds)

    @contextmanager
    def calm(self) -> Iterator[None]:
        """No random faults for a while (management calls, the final catch-up); rules stay."""
        saved = self.rate
        for proxy in self.proxies.values():
            proxy.randomly(0.0, self.kinds)
        try:
            yield
        finally:
            self.set_rate(saved)

    def requests(self) -> int:
        return sum(p.requests for p in self.proxies.values())

    def wait_idle(self, timeout: float = 60) -> bool:
        """True once no proxied request is in flight (a killed worker's last requests have landed)."""
        return all(p.wait_idle(timeout) for p in self.proxies.values())

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        for server in (self.tokens, self.gcs, self.moto, self.app, self.customers):
            server.stop()


def start_servers(seed: int, *, slow_seconds: float = 0.2, timeout_seconds: float = 0.5) -> Servers:
    started: list[Any] = []
    try:
        for start in (start_azurite, start_azurite, start_moto, start_gcs_emulator, lambda: TokenEndpoint().start()):
            started.append(start())
    except BaseException:
        for server in started:
            server.stop()
        raise
    app, customers, moto, gcs, tokens = started

    def proxy(upstream: str, n: int) -> FaultProxy:
        return FaultProxy(
            upstream, seed=seed * 10 + n, slow_seconds=slow_seconds, timeout_seconds=timeout_seconds
        ).start()

    proxies: dict[str, FaultProxy] = {}
    app_faulty = app.connection_string
    for i, service in enumerate(APP_SERVICES):
        upstream = endpoint_of(app.connection_string, service)
        proxies[f"app_{service.lower()}"] = proxy(upstream, i)
        app_faulty = app_faulty.replace(
            f"{service}Endpoint={upstream}", f"{service}Endpoint={proxies[f'app_{service.lower()}'].url}"
        )
    blob = endpoint_of(customers.connection_string, "Blob")
    for n, (kind, upstream) in enumerate((("azure_blob", blob), ("s3", moto.url), ("gcs", gcs.url)), 7):
        proxies[DESTINATION_PROXIES[kind]] = proxy(upstream, n)
    account, key = _pair(customers.connection_string, "AccountName"), _pair(customers.connection_string, "AccountKey")
    azure = proxies[DESTINATION_PROXIES["azure_blob"]].url
    customers_faulty = (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={azure}/{account};"
    )
    return Servers(
        app,
        customers,
        moto,
        gcs,
        tokens,
        proxies,
        app.connection_string,
        app_faulty,
        customers.connection_string,
        customers_faulty,
    )


@dataclass(frozen=True)
class Point:
    """Requests a kill may be aimed at: a method, a pattern of the path and query, perhaps of one header."""

    method: str | None = None
    path: str = ""
    header: tuple[str, str] | None = None  # (name, pattern searched in its value)

    def matches(self, headers: dict[str, str]) -> bool:
        if self.header is None:
            return True
        name, pattern = self.header
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), "")
        return re.search(pattern, value) is not None


# The commit of an export file at each destination type, and of an ingest segment in the app's storage.
EXPORT_COMMITS = (
    Point("PUT", r"comp=blocklist"),  # Azure: the block list
    Point("POST", r"[?&]uploadId="),  # S3: CompleteMultipartUpload
    Point("PUT", r"[?&]upload_id=", ("Content-Range", r"/\d+$")),  # GCS: the chunk that names the total size
)
INGEST_COMMITS = (Point("PUT", re.escape(SEGMENT_SUFFIX)),)  # the segment put


@dataclass
class KillSwitch:
    """SIGKILLs a worker process at its n-th storage request through any proxy, while armed.

    The fatal request is reset before it reaches the server (`reset_before`) or after the server
    applied it (`reset_after`): a process dying with a write on the wire.
    """

    proxies: dict[str, FaultProxy]
    fired: Counter = field(default_factory=Counter)  # (proxy, kind) of each kill, to keep them out of the fault counts
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pid: int | None = None
    _left: int = 0
    _rules: list[tuple[FaultProxy, Rule]] = field(default_factory=list)
    _fired_now: str | None = None

    def arm(self, pid: int, after_requests: int, kind: str, points: tuple[Point, ...] = ()) -> None:
        """Kill at the n-th request (only those at one of `points`, if given)."""
        with self._lock:
            self._pid, self._left, self._fired_now = pid, max(1, after_requests), None
        for name, proxy in self.proxies.items():
            for point in points or (Point(),):
                rule = Rule(kind, method=point.method, path=point.path, when=self._when(name, kind, point), times=1)
                # The kill must win over the random faults but not over a revocation (a rule added earlier).
                proxy.add(rule)
                self._rules.append((proxy, rule))

    def disarm(self) -> str | None:
        """Remove the rules; the name of the proxy whose request killed the process during this arm, or None.

        The name is cleared here: a later call that is not armed must never report an old kill as its own.
        """
        with self._lock:
            self._pid = None
            fired, self._fired_now = self._fired_now, None
        for proxy, rule in self._rules:
            proxy.remove(rule)
        self._rules.clear()
        return fired

    def _when(self, name: str, kind: str, point: Point):
        def when(method: str, path: str, headers: dict[str, str]) -> bool:
            if not point.matches(headers):
                return False
            with self._lock:
                if self._pid is None:
                    return False
                self._left -= 1
                if self._left > 0:
                    return False
                pid, self._pid = self._pid, None
                self._fired_now = name
                self.fired[(name, kind)] += 1
            kill(pid)
            return True

        return when


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def compress_sdk_backoff(factor: float) -> None:
    """Scale the storage SDKs' retry back-off in this process (Blob and Queue wait 15 s, then 18 s, ...).

    The retries themselves are untouched; only the real-time waiting between them is compressed, so a
    month of faults fits in minutes. A no-op if the SDKs' internals have moved.
    """
    if factor == 1:
        return
    classes = []
    try:
        from azure.core.pipeline.policies import RetryPolicy

        classes.append(RetryPolicy)  # Tables
        from azure.storage.blob._shared import policies as blob_policies
        from azure.storage.queue._shared import policies as queue_policies

        classes += [
            blob_policies.ExponentialRetry,
            blob_policies.LinearRetry,
            queue_policies.ExponentialRetry,
            queue_policies.LinearRetry,
        ]
    except ImportError:
        pass
    for cls in classes:
        original = cls.get_backoff_time
        if getattr(original, "_soak_scaled", False):
            continue

        def scaled(self, settings, _original=original):
            return _original(self, settings) * factor

        scaled._soak_scaled = True
        cls.get_backoff_time = scaled
