"""The fault proxy's own kinds against a real Azurite: the storage timeout, a spoiled signature, idling."""

from __future__ import annotations

import re
import threading
import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from exporter.local.faultproxy import FaultProxy, Rule


@pytest.fixture
def proxied(azurite_connection: str):
    """A blob client whose endpoint is a fault proxy in front of Azurite's blob port."""
    endpoint = re.search(r"BlobEndpoint=(http://[^/;]+)", azurite_connection)[1]
    proxy = FaultProxy(endpoint, seed=3, timeout_seconds=0.05).start()
    connection = azurite_connection.replace(endpoint, proxy.url)
    yield proxy, BlobServiceClient.from_connection_string(connection, retry_total=0)
    proxy.stop()


def test_timeout_answers_operation_timed_out(proxied, tag):
    proxy, client = proxied
    container = client.create_container(f"to-{tag}")
    proxy.add(Rule("timeout", method="PUT", path="/a.txt"))
    with pytest.raises(HttpResponseError) as refused:
        container.upload_blob("a.txt", b"1")
    assert refused.value.status_code == 500 and refused.value.error_code == "OperationTimedOut"
    assert proxy.injected["timeout"] == 1


def test_bad_signature_is_refused_by_the_server_itself(proxied, tag):
    proxy, client = proxied
    container = client.create_container(f"sig-{tag}")
    rule = proxy.add(Rule("bad_signature", path=f"/sig-{tag}", times=10**9))
    for _ in range(2):
        with pytest.raises(HttpResponseError) as refused:
            container.upload_blob("a.txt", b"1")
        assert refused.value.status_code == 403
    proxy.remove(rule)
    container.upload_blob("a.txt", b"1")
    assert container.download_blob("a.txt").readall() == b"1"


def test_wait_idle_waits_for_a_slow_request(proxied, tag):
    proxy, client = proxied
    container = client.create_container(f"idle-{tag}")
    proxy.slow_seconds = 0.5
    proxy.add(Rule("slow", method="PUT"))
    writer = threading.Thread(target=container.upload_blob, args=("a.txt", b"1"))
    writer.start()
    while proxy.in_flight == 0 and writer.is_alive():
        time.sleep(0.005)
    assert proxy.wait_idle(10)
    assert container.get_blob_client("a.txt").exists()
    writer.join()
