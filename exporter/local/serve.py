"""`python -m exporter serve`: the local stand-in for the Functions host.

Not a second app: every HTTP request goes to a function registered in function_app.py, as a
`func.HttpRequest`, the way the Azure host hands it over (exporter/local/functions.py), on waitress
with a per-request deadline (exporter/local/front.py). Beside it, the every-minute timer and a queue
listener with dequeue counts and a poison queue (exporter/local/host.py). Real clock; storage from
AzureWebJobsStorage.

The console's development sign-in (a user name, no password) exists only when `serve` is started
with `--dev-sign-in` or EXPORT_CONSOLE_DEV_SIGN_IN=true; the function app never offers it, and
infra/ never sets that setting. Without it, `serve`'s console answers that sign-in is not set up.

Function keys: none by default, as with `func start`, and then `serve` listens on loopback only;
with EXPORT_LOCAL_FUNCTION_KEY set, the API's functions need that key (see functions.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from .. import triggers
from ..context import Context
from ..jobs import schedule, sweep
from .front import DEADLINE_SECONDS, FrontServer
from .functions import KEY_SETTING, FunctionsApp, http_functions, registered
from .host import drain, drain_notifications

log = logging.getLogger(__name__)

DEV_SIGN_IN_SETTING = "EXPORT_CONSOLE_DEV_SIGN_IN"


def dev_sign_in_from_env() -> bool:
    """The explicit local switch for the development sign-in (never set in Azure)."""
    return os.environ.get(DEV_SIGN_IN_SETTING, "").strip().lower() == "true"


def key_from_env() -> str | None:
    return os.environ.get(KEY_SETTING, "").strip() or None


SWEEP_SECONDS = 3600.0  # the due index's sweep (function_app.py: due_index_sweep)


def _every(seconds: float, stop: threading.Event, work: Callable[[], object], name: str) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            try:
                work()
            except Exception as error:  # noqa: BLE001 - a failed run is not retried, like the host's timer
                log.error("%s failed: %s", name, type(error).__name__)
            stop.wait(seconds)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


class LocalHost:
    """The HTTP front on the function app's functions, the timer and the queue listener, started and stopped together."""

    def __init__(
        self,
        ctx: Context,
        host: str = "127.0.0.1",
        port: int = 7071,
        timer_seconds: float = 60.0,
        queue_poll_seconds: float = 1.0,
        dev_sign_in: bool = False,
        deadline: float = DEADLINE_SECONDS,
        key: str | None = None,
    ):
        self.ctx = ctx
        self.dev_sign_in = dev_sign_in
        self.app = FunctionsApp(http_functions(registered()), "", self._scope, key)
        self.server = FrontServer(self.app, host, port, deadline)
        bound, bound_port = self.server.address
        shown = f"[{bound}]" if ":" in bound else bound
        self.app.base_url = f"http://{shown}:{bound_port}"
        self.url = f"{self.app.base_url}/api/"
        self.console_url = f"{self.app.base_url}/console"
        self._stop = threading.Event()
        self._timer_seconds = timer_seconds
        self._queue_poll_seconds = queue_poll_seconds
        self._http = threading.Thread(target=self.server.run, name="http", daemon=True)

    def _scope(self) -> AbstractContextManager[None]:
        """Each request runs its function on this host's context, with this host's console sign-in."""
        return triggers.local_request(triggers.LocalRequest(self.ctx, self.dev_sign_in))

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> LocalHost:
        _every(self._timer_seconds, self._stop, lambda: schedule(self.ctx), "timer")
        _every(SWEEP_SECONDS, self._stop, lambda: sweep(self.ctx), "sweep")  # hourly and at start, as in Azure
        _every(self._queue_poll_seconds, self._stop, lambda: drain(self.ctx, retry_delay=30), "queue")
        _every(self._queue_poll_seconds, self._stop, lambda: drain_notifications(self.ctx), "notifications")
        self._http.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.stop()
        self._http.join(timeout=10)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(host: str, port: int, timer_seconds: float = 60.0, dev_sign_in: bool = False) -> int:
    """Run until interrupted."""
    dev_sign_in = dev_sign_in or dev_sign_in_from_env()
    key = key_from_env()
    if key is None and not _loopback(host):
        message = f"is required to listen on {host}: without it anyone who reaches the port is an operator"
        print(
            json.dumps(
                {"error": {"code": "invalid_input", "message": f"{KEY_SETTING}: {message}", "field": KEY_SETTING}}
            )
        )
        return 2
    local = LocalHost(Context.create(), host, port, timer_seconds, dev_sign_in=dev_sign_in, key=key).start()
    log.info("serving", extra={"url": local.url})
    print(
        json.dumps(
            {
                "serving": local.url,
                "console": local.console_url,
                "dev_sign_in": dev_sign_in,
                "function_key": key is not None,
                "queue": local.ctx.settings.queue_name,
            }
        ),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0
