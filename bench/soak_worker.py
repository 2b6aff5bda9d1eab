"""Worker processes: the function app's handlers in a child process that the soak may SIGKILL at any point.

The child (`python -m bench.soak --worker`, its configuration in the SOAK_WORKER environment variable)
reads one JSON command per line on stdin and answers one JSON line on stdout:
`tick` (the timer handler once, then the queue handler until the queue is empty, as the Functions host
would: delivery counts, failed jobs back after a visibility timeout, the poison queue), `upsert` and
`delete_user` (the HTTP handlers). Each command carries the simulated instant (`now`).

The parent keeps one child active and one warm standby, so a kill costs no start-up wait.
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_module
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from exporter.local.host import json_request

from .soak_servers import KillSwitch, Point, Servers, compress_sdk_backoff, kill

ROOT = Path(__file__).resolve().parent.parent
ENV = "SOAK_WORKER"
COMMAND_TIMEOUT = 600  # real seconds; a command that takes longer is a hang (reported, the child killed)


# ------------------------------------------------------------------ the child


@dataclass
class WorkerConfig:
    settings: dict[str, Any]  # exporter.settings.Settings fields (the faulty connection string)
    backoff_factor: float
    visibility_seconds: int  # how long a received job stays invisible (a killed worker's job comes back after it)
    retry_seconds: int  # how long a failed job stays invisible (host.json's visibilityTimeout)

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def child_main() -> int:
    """The worker process: answer commands until stdin closes."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to the log, never into the protocol
    logging.basicConfig(level=logging.ERROR, format="worker %(process)d %(levelname)s %(name)s: %(message)s")
    config = WorkerConfig(**json.loads(os.environ[ENV]))
    compress_sdk_backoff(config.backoff_factor)
    sys.path.insert(0, str(ROOT))
    child = WorkerApp(config)
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = child.run(command)
        except Exception as error:
            logging.exception("command %s failed", command.get("op"))
            answer = {"error": f"{type(error).__name__}: {error}"[:500]}
        out.write(json.dumps(answer) + "\n")
    return 0


class WorkerApp:
    """The function app's handlers on a context with a manual clock, built on the first command."""

    def __init__(self, config: WorkerConfig):
        import function_app
        from exporter.clock import ManualClock
        from exporter.settings import Settings

        self.config = config
        self.settings = Settings(**config.settings)
        self.clock = ManualClock(datetime.now().astimezone())
        self.handlers = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
        self.ctx = None

    def context(self):
        if self.ctx is None:
            from exporter import triggers
            from exporter.context import Context

            self.ctx = Context.create(self.settings, self.clock)  # creates tables and queues: may meet faults
            triggers.use_context(self.ctx)
        return self.ctx

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        self.clock.set(datetime.fromisoformat(command["now"]))
        try:
            self.context()
        except Exception as error:  # noqa: BLE001 - a cold start that met a fault: the host answers 500
            logging.error("start-up failed: %s", type(error).__name__)
            return {"status": 500, "body": None, "startup_error": type(error).__name__}
        return getattr(self, f"op_{command['op']}")(command)

    # ---------------------------------------------------------------- HTTP

    def op_upsert(self, command: dict[str, Any]) -> dict[str, Any]:
        account = command["account"]
        return self._http("ucd_upsert", "POST", f"/api/ucd/{account}/upsert", {"account": account}, command["body"])

    def op_delete_user(self, command: dict[str, Any]) -> dict[str, Any]:
        account, user = command["account"], command["user_id"]
        return self._http(
            "ucd_user", "DELETE", f"/api/ucd/{account}/users/{user}", {"account": account, "user_id": user}
        )

    def _http(self, handler: str, method: str, url: str, route: dict[str, str], body: Any = None) -> dict[str, Any]:
        request = json_request(method, url, route, body)
        try:
            response = self.handlers[handler](request)
        except Exception as error:  # noqa: BLE001 - the host answers 500 for an unhandled exception
            logging.error("%s raised %s", handler, type(error).__name__)
            return {"status": 500, "body": {"unhandled": type(error).__name__}}
        return {"status": response.status_code, "body": json.loads(response.get_body() or b"null")}

    # ---------------------------------------------------------------- timer and queue

    def op_tick(self, command: dict[str, Any]) -> dict[str, Any]:
        from azure.functions.timer import TimerRequest

        stats = {"timer_errors": 0, "jobs": 0, "failed": 0, "poisoned": 0, "copies": 0, "queue_errors": 0}
        try:
            self.handlers["scheduler"](TimerRequest(past_due=False))
        except Exception as error:  # noqa: BLE001 - the host logs it; the next minute runs again
            logging.warning("scheduler raised %s", type(error).__name__)
            stats["timer_errors"] += 1
        rng = random.Random(command.get("seed", 0))
        Drain(self, rng, command.get("copy_rate", 0.0), stats).run()
        return stats


class Drain:
    """The host's queue loop, with duplicated and reordered deliveries mixed in."""

    MAX_DELIVERIES = 2000  # per tick: a job that re-queues itself forever fails the soak, not the machine

    def __init__(self, child: WorkerApp, rng: random.Random, copy_rate: float, stats: dict[str, int]):
        self.child = child
        self.ctx = child.ctx
        self.rng = rng
        self.copy_rate = copy_rate
        self.stats = stats
        self.queue = self.ctx.storage.queue()
        self.poison = self.ctx.storage.queue(self.ctx.settings.poison_queue_name)

    def run(self) -> None:
        deliveries = 0
        while deliveries < self.MAX_DELIVERIES:
            messages = self._receive(self.queue)
            if messages is None:
                continue
            if not messages:
                break
            self.rng.shuffle(messages)  # delivered out of order
            for message in messages:
                deliveries += 1
                self._maybe_copy(message)
                self._deliver(message)
        self._drain_poison()

    def _receive(self, queue) -> list | None:
        from azure.core.exceptions import AzureError

        try:
            return list(
                queue.receive_messages(max_messages=16, visibility_timeout=self.child.config.visibility_seconds)
            )
        except AzureError:
            self.stats["queue_errors"] += 1
            return None if self.stats["queue_errors"] < 50 else []

    def _quietly(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """A queue call whose failure the host only logs: counted; the message's visibility decides the rest."""
        from azure.core.exceptions import AzureError

        try:
            call(*args, **kwargs)
            return True
        except AzureError:
            self.stats["queue_errors"] += 1
            return False

    def _maybe_copy(self, message) -> None:
        """A duplicate of the job, delivered at once or a little later (after other jobs: reordered)."""
        if self.rng.random() >= self.copy_rate:
            return
        delay = self.rng.choice([0, 0, 1, 3])
        if self._quietly(self.queue.send_message, message.content, visibility_timeout=delay):
            self.stats["copies"] += 1

    def _deliver(self, message) -> None:
        if message.dequeue_count > self.ctx.settings.max_dequeue_count:
            self._to_poison(message)
            return
        if not self._handle("export_worker", message):
            logging.warning("export job failed (delivery %d)", message.dequeue_count)
            self._quietly(self.queue.update_message, message, visibility_timeout=self.child.config.retry_seconds)
            return
        self.stats["jobs"] += 1
        self._quietly(self.queue.delete_message, message)  # if it fails, it comes back: one more duplicate

    def _handle(self, handler: str, message) -> bool:
        """The host's call of a queue handler: False if it raised (the host leaves the message)."""
        from azure.functions.queue import QueueMessage

        try:
            self.child.handlers[handler](
                QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count)
            )
            return True
        except Exception as error:  # noqa: BLE001 - the host logs it and leaves the message for later
            logging.warning("%s raised %s", handler, type(error).__name__)
            self.stats["failed"] += 1
            return False

    def _to_poison(self, message) -> None:
        if self._quietly(self.poison.send_message, message.content):
            self._quietly(self.queue.delete_message, message)

    def _drain_poison(self) -> None:
        for _ in range(100):
            messages = self._receive(self.poison)
            if not messages:
                return
            for message in messages:
                if self._handle("export_poison", message):
                    self.stats["poisoned"] += 1
                    self._quietly(self.poison.delete_message, message)  # comes back after its visibility timeout


# ------------------------------------------------------------------ the parent's side


@dataclass
class KillPlan:
    """When to SIGKILL the worker during one command: at its n-th storage request, or after a delay."""

    at_request: int | None = None
    after_seconds: float | None = None
    kind: str = "reset_before"  # the fatal request: lost before the server, or applied and its answer lost
    points: tuple[Point, ...] = ()  # count only these requests (e.g. the commits: die at the commit)


@dataclass
class Outcome:
    answer: dict[str, Any] | None  # None: the process died (killed) before answering
    killed: str | None = None  # "request:<proxy>", "timer", "died", or None
    killed_after_answer: bool = False  # the planned kill landed after the answer (the command completed)
    seconds: float = 0.0
    requests: int = 0


class WorkerProcess:
    """One worker process and a thread that turns its stdout into a queue of answers."""

    def __init__(self, config: WorkerConfig, log):
        env = {**os.environ, ENV: config.to_env()}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        self.lines: queue_module.Queue = queue_module.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = False

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout: float) -> dict[str, Any] | None:
        line = self.lines.get(timeout=timeout)
        return None if line is None else json.loads(line)

    def wait_ready(self) -> bool:
        if not self.ready:
            self.ready = self.next_line(COMMAND_TIMEOUT) is not None
        return self.ready

    def send(self, command: dict[str, Any]) -> bool:
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                kill(self.process.pid)
                self.process.wait()


class Workers:
    """The parent's handle on the worker processes: run a command, perhaps killing the process midway."""

    def __init__(self, config: WorkerConfig, servers: Servers, switch: KillSwitch, log_path: Path):
        self.config = config
        self.servers = servers
        self.switch = switch
        self.log = open(log_path, "w")
        self.active: WorkerProcess | None = None
        self.standby: WorkerProcess | None = None
        self.spawned = 0
        self.hangs = 0

    def _spawn(self) -> WorkerProcess:
        self.spawned += 1
        return WorkerProcess(self.config, self.log)

    def _take(self) -> WorkerProcess:
        if self.active is None or self.active.process.poll() is not None:
            self.active = self.standby or self._spawn()
            self.standby = None
        if self.standby is None:
            self.standby = self._spawn()  # warms up while the active one works
        return self.active

    def call(self, command: dict[str, Any], plan: KillPlan | None = None) -> Outcome:
        child = self._take()
        if not child.wait_ready():
            self._buried(child)
            return Outcome(None, killed="died at start")
        started, requests = time.monotonic(), self.servers.requests()
        timer = self._arm(child, plan)
        answer = None
        if child.send(command):
            try:
                answer = child.next_line(COMMAND_TIMEOUT)
            except queue_module.Empty:
                self.hangs += 1
                kill(child.process.pid)
        fired = self.switch.disarm()  # from here on neither the switch nor the timer can kill
        timed_out = timer is not None and timer.cancel()
        outcome = Outcome(answer, seconds=time.monotonic() - started, requests=self.servers.requests() - requests)
        if answer is None:
            outcome.killed = f"request:{fired}" if fired else ("timer" if timed_out else "died")
        elif fired or timed_out:
            # Killed just after it answered: the command is done, but this child must serve no other one
            # (it may still look alive for a moment, and the next command would die with it unplanned).
            outcome.killed_after_answer = True
        if answer is None or fired or timed_out:
            self._buried(child)
        return outcome

    def _arm(self, child: WorkerProcess, plan: KillPlan | None) -> _Timer | None:
        if plan is None:
            return None
        if plan.at_request is not None:
            self.switch.arm(child.process.pid, plan.at_request, plan.kind, plan.points)
            return None
        return _Timer(plan.after_seconds or 0.0, child.process.pid)

    def _buried(self, child: WorkerProcess) -> None:
        """A dead child: reap it, and let its last requests land before anything else happens."""
        kill(child.process.pid)
        child.process.wait()
        self.servers.wait_idle()
        if self.active is child:
            self.active = None

    def stop(self) -> None:
        for child in (self.active, self.standby):
            if child is not None:
                child.stop()
        self.log.close()


class _Timer:
    """Kills a process after a delay, unless cancelled first: `cancel` says for certain whether it fired."""

    def __init__(self, delay: float, pid: int):
        self.fired = False
        self._cancelled = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(delay, self._fire, args=(pid,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, pid: int) -> None:
        with self._lock:
            if self._cancelled:
                return
            self.fired = True
            kill(pid)

    def cancel(self) -> bool:
        """No kill after this; True if the kill was sent (perhaps after the command had answered)."""
        with self._lock:
            self._cancelled = True
        self._timer.cancel()
        return self.fired
