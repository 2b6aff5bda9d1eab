"""For the egress policy's tests: an injected resolver and a recording connector (so no test sends a packet
off loopback, even if the code under test were wrong), loopback listeners that count connections or answer
junk, and a destination body of each type whose customer-supplied address is a given URL."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from exporter import egress
from exporter.local.cloudservers import service_account_key
from exporter.local.devstorage import DEV_KEY

# Each field a customer supplies an address in: (type, field named by a refusal)
ADDRESS_FIELDS = {
    "s3 endpoint_url": "destination.endpoint_url",
    "gcs endpoint_url": "destination.endpoint_url",
    "gcs token_uri": "destination.service_account_key.token_uri",
    "azure BlobEndpoint": "destination.connection_string",
}
PUBLIC = "93.184.216.34"  # a public address: never dialled, the connector only records it
PUBLIC_TOKENS = "93.184.216.35"
_KEY: dict[str, str] = {}


def key(token_uri: str) -> dict[str, str]:
    """A service-account key (one RSA key per session: making one takes a while) naming `token_uri`."""
    if not _KEY:
        _KEY.update(service_account_key("https://oauth2.googleapis.com/token", name="egress"))
    return {**_KEY, "token_uri": token_uri}


def body_for(address_field: str, url: str, token_uri: str = "https://oauth2.googleapis.com/token") -> dict[str, Any]:
    """A destination body whose `address_field` (a key of ADDRESS_FIELDS) is `url`, every other field valid."""
    if address_field == "s3 endpoint_url":
        return {
            "type": "s3",
            "bucket": "acme-exports",
            "prefix": "insider/",
            "region": "us-east-1",
            "access_key_id": "AKIAEGRESSTEST000000",
            "secret_access_key": "egress-test-secret-access-key-0000000000",
            "endpoint_url": url,
        }
    if address_field == "gcs endpoint_url":
        return {
            "type": "gcs",
            "bucket": "acme-exports",
            "prefix": "insider/",
            "service_account_key": key(token_uri),
            "endpoint_url": url,
        }
    if address_field == "gcs token_uri":
        return {"type": "gcs", "bucket": "acme-exports", "prefix": "insider/", "service_account_key": key(url)}
    if address_field == "azure BlobEndpoint":
        connection = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={DEV_KEY};BlobEndpoint={url}"
        return {"type": "azure_blob", "connection_string": connection, "container": "exports", "prefix": "insider/"}
    raise ValueError(address_field)


def with_path(address_field: str, base: str) -> str:
    """The URL as the field holds it: a token_uri has a path, an Azure BlobEndpoint names the account."""
    return base + (
        "/token" if address_field == "gcs token_uri" else "/acct" if address_field.startswith("azure") else ""
    )


@dataclass
class Resolver:
    """Names resolve as the test says (each name may answer differently on each lookup); others do not resolve."""

    names: dict[str, list[list[str]]]
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self.names.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "not known to the test")
        return answers.pop(0) if len(answers) > 1 else answers[0]


@dataclass
class Connector:
    """Records every connection attempt. Only a loopback address is really dialled (and only when `dial`);
    anything else is refused as a closed port would be, so nothing leaves the machine."""

    dial: bool = False
    attempts: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, address: tuple[str, int], timeout: Any, source: Any, options: Any) -> socket.socket:
        self.attempts.append(address)
        if self.dial and address[0] in ("127.0.0.1", "::1"):
            return egress.system_connect(address, timeout, source, options)
        raise ConnectionRefusedError(111, "refused by the test connector")


def strict(names: dict[str, list[list[str]]] | None = None, dial: bool = False) -> egress.EgressPolicy:
    """The production policy (no private addresses, https only), with the test's resolver and connector."""
    return egress.EgressPolicy(allow_private=False, resolve=Resolver(dict(names or {})), connect=Connector(dial))


class Listener:
    """A loopback TCP server: counts connections; `answer` (bytes) is sent after the request's headers
    (or at once, as a banner, when `banner`), then the connection is closed."""

    def __init__(self, answer: bytes = b"", banner: bool = False):
        self.answer, self.banner = answer, banner
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    if not self.banner:
                        head = b""
                        while b"\r\n\r\n" not in head:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            head += chunk
                        self.requests.append(head)
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def stop(self) -> None:
        self.sock.close()


def http_answer(status: str, body: bytes, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n".encode() + body
