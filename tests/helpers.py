"""Helpers shared by test modules: the start instant, the app's secret key, API calls, concurrent workers.

Fixtures stay in conftest.py; test modules import helpers from here, never from conftest or each other.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from exporter import api
from exporter.clock import Clock
from exporter.context import Context
from exporter.settings import Settings

SECRET_KEY = "m3Jx0n2dR2bYbQ4dV8kq3G5Qm1u9r2o7Zr1bXq8lY2c="
T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=timezone.utc)

# The app settings an operator may tune, each with a default (local.settings.sample.json and the Bicep set them all).
TUNING_SETTINGS = (
    "EXPORT_SETTLE_SECONDS",
    "EXPORT_QUEUE_NAME",
    "EXPORT_TABLE_PREFIX",
    "UCD_CONTAINER",
    "UCD_COMMIT_TIMEOUT_SECONDS",
    "EXPORT_MAX_WINDOWS_PER_RUN",
    "EXPORT_MAX_SECONDS_PER_RUN",
    "EXPORT_LEASE_SECONDS",
    "EXPORT_MAX_DEQUEUE_COUNT",
)


def call(ctx: Context, operation: str, body: Any = None, **params: str) -> api.ApiResponse:
    """Run an API operation as the HTTP routes and the CLI do."""
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return api.handle(ctx, operation, api.ApiRequest(params=params, body=raw))


def integration_body(connection_string: str, container: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "warehouse feed",
        "destination": {
            "type": "azure_blob",
            "connection_string": connection_string,
            "container": container,
            "prefix": "insider/",
        },
        "events": [{"name": "purchase", "params": ["price", "currency"]}, {"name": "email_open", "params": []}],
        "attributes": ["email"],
        "frequency_hours": 1,
        "status": "active",
    }
    body.update(overrides)
    return body


def run_together(work: Callable[[int], Any], n: int, timeout: float = 120) -> list[Any]:
    """Run work(0..n-1) on n threads released at the same instant; return their results, or raise the first error."""
    barrier = threading.Barrier(n, timeout=60)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    if errors:
        raise errors[0]
    return results


# ------------------------------------------------------------------ storage behind a fault proxy


def endpoint(connection: str, service: str) -> str:
    """The http://host:port of one service ("Blob", "Queue", "Table") in an explicit connection string."""
    found = re.search(rf"{service}Endpoint=(http://[^/;]+)", connection)
    assert found, f"no {service}Endpoint in the test connection string"
    return found[1]


def through(connection: str, service: str, url: str) -> str:
    """The connection string with one service reached through `url` (a proxy) instead."""
    return connection.replace(f"{service}Endpoint={endpoint(connection, service)}", f"{service}Endpoint={url}")


def proxied_context(settings: Settings, clock: Clock, connection: str, **changes: Any) -> Context:
    """The app on `connection` (some service behind a proxy), with the test's isolated names."""
    return Context.create(dataclasses.replace(settings, storage_connection=connection, **changes), clock)
