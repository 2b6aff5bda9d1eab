"""The app's storage clients keep as many connections as the threads that share them use at once.

With requests' default pool (10 per host), an upsert's 32 side-by-side profile reads threw connections
away ("Connection pool is full, discarding connection", urllib3) and opened new ones on the next burst.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from exporter import storage
from exporter.ucd import profiles, reader, tables
from exporter.ucd.request import parse_upsert
from tests.ucd_helpers import T0

POOL_FULL = "Connection pool is full"


def _pool_sizes(client) -> set[int]:
    session = client._client._client._pipeline._transport._transport.session  # the shared transport's session
    return {adapter._pool_maxsize for adapter in session.adapters.values()}


def test_the_pools_hold_the_threads_that_share_each_client(ctx):
    assert storage.TABLE_CONNECTIONS >= profiles.READ_WORKERS + tables.WORKERS
    assert storage.BLOB_CONNECTIONS >= reader.READ_PREFETCH * reader.DOWNLOAD_CONCURRENCY + reader.LIST_CONCURRENCY
    assert _pool_sizes(ctx.storage.table(storage.UCD_PROFILES_TABLE)) == {storage.TABLE_CONNECTIONS}
    assert _pool_sizes(ctx.storage.ucd_container()) == {storage.BLOB_CONNECTIONS}


def test_an_upsert_of_many_users_and_its_window_read_discard_no_connection(ctx, caplog):
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    users = [
        {
            "user_id": f"user-{i}",
            "attributes": {"email": f"u{i}@example.com"},
            "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"n": i}}],
        }
        for i in range(3 * profiles.READ_WORKERS)
    ]
    ctx.ucd.upsert(parse_upsert("acme", {"users": users}))
    ctx.ucd.upsert(parse_upsert("acme", {"users": users}))  # again: every profile read finds one
    day = T0.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = sum(b.num_rows for b in ctx.ucd.read_window("acme", day - timedelta(days=1), day + timedelta(days=2)))
    assert rows == len(users)
    discarded = [r.getMessage() for r in caplog.records if POOL_FULL in r.getMessage()]
    assert discarded == []


@pytest.mark.parametrize("connections", [1, 12])
def test_a_pooled_transport_keeps_its_size_after_a_client_is_closed(azurite_connection, connections):
    from azure.storage.blob import BlobServiceClient

    transport = storage.pooled_transport(connections)
    with BlobServiceClient.from_connection_string(azurite_connection, transport=transport) as client:
        list(client.list_containers())
    assert transport.session is not None  # not owned: closing a client does not drop it for a default one
    assert {a._pool_maxsize for a in transport.session.adapters.values()} == {connections}


def test_the_transports_are_configured_as_the_sdks_configure_their_own(ctx, azurite_connection):
    """A transport passed in gets none of the SDK's settings: timeouts and read block size are given as theirs."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    def config(client) -> tuple:
        c = client._client._client._pipeline._transport
        c = getattr(c, "_transport", c).connection_config
        return (c.timeout, c.read_timeout, c.data_block_size)

    sdk_blob = BlobServiceClient.from_connection_string(azurite_connection).get_container_client("x")
    sdk_queue = QueueClient.from_connection_string(azurite_connection, "x")
    sdk_table = TableServiceClient.from_connection_string(azurite_connection).get_table_client("x")
    assert config(ctx.storage.ucd_container()) == config(sdk_blob)
    assert config(ctx.storage.queue()) == config(sdk_queue)
    assert config(ctx.storage.table(storage.RUNS_TABLE)) == config(sdk_table)
