"""Connections pinned to the address the egress policy checked (exporter/egress.py), for each HTTP stack.

The SDKs' urllib3 connections are replaced by ones whose dial address is the checked IP, while the
Host header, SNI and the certificate check keep the host name: no second lookup, so DNS rebinding
cannot turn a connection inward. botocore (S3), requests (Azure's transport, google-auth and the
notification sender) each get their hook here; redirects are refused, never followed.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

if TYPE_CHECKING:  # imported where used: the HTTP stacks load only with a destination that needs them
    import requests
    import requests.adapters
    from botocore.client import BaseClient
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

    from .egress import Guard


class PinnedConnection:
    """Mixed into a urllib3 connection class: dial the checked address, keep the host name for TLS."""

    guard: ClassVar[Guard]

    def _new_conn(self) -> socket.socket:
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

        conn = cast("HTTPConnection", self)  # mixed into one
        host, port = conn._dns_host.rstrip("."), conn.port
        failure: OSError | None = None
        for address in self.guard.addresses(host, port):
            try:
                return self.guard.policy.connect(
                    (address, port), conn.timeout, conn.source_address, conn.socket_options
                )
            except TimeoutError as exc:
                raise ConnectTimeoutError(conn, f"Connection to {host} timed out.") from exc
            except OSError as exc:
                failure = exc
        raise NewConnectionError(conn, f"Failed to establish a new connection: {failure}") from failure


def pinned_pools(
    guard: Guard, http_pool: type[HTTPConnectionPool], https_pool: type[HTTPConnectionPool]
) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes (for a PoolManager's `pool_classes_by_scheme`) whose connections are pinned by `guard`."""

    def pinned(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
        connection = type(
            f"Pinned{pool.ConnectionCls.__name__}", (PinnedConnection, pool.ConnectionCls), {"guard": guard}
        )
        return type(f"Pinned{pool.__name__}", (pool,), {"ConnectionCls": connection})

    return {"http": pinned(http_pool), "https": pinned(https_pool)}


def pin_botocore(client: BaseClient, guard: Guard) -> BaseClient:
    """An S3 client whose connections are pinned (botocore's URLLib3Session has no public hook for it)."""
    from botocore.awsrequest import AWSHTTPConnectionPool, AWSHTTPSConnectionPool

    session = client._endpoint.http_session
    pools = pinned_pools(guard, AWSHTTPConnectionPool, AWSHTTPSConnectionPool)
    session._pool_classes_by_scheme = pools
    session._manager.pool_classes_by_scheme = pools
    return client


def _pinned_adapter(guard: Guard) -> requests.adapters.HTTPAdapter:
    import requests.adapters
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class PinnedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pinned_pools(guard, HTTPConnectionPool, HTTPSConnectionPool)

    return PinnedAdapter()


class NoRedirects:
    """Mixed into a requests.Session: a redirect is refused, never followed."""

    guard: Guard

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        if resp.is_redirect:
            resp.close()
            raise self.guard.redirect(resp.url)
        return None


class Pinnable(Protocol):
    """A requests.Session with NoRedirects mixed in (the only sessions pinned)."""

    guard: Guard
    trust_env: bool

    def mount(self, prefix: str, adapter: requests.adapters.BaseAdapter) -> None: ...


S = TypeVar("S", bound=Pinnable)


def pin_session(session: S, guard: Guard) -> S:
    """`session` (a requests.Session) with pinned connections, no redirects and no proxies or netrc from the environment."""
    adapter = _pinned_adapter(guard)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = False
    session.guard = guard
    return session


def pinned_session(guard: Guard) -> requests.Session:
    """A plain requests.Session under `guard` (Azure's transport, Google's token requests)."""
    import requests

    class Session(NoRedirects, requests.Session):
        pass

    return pin_session(Session(), guard)
