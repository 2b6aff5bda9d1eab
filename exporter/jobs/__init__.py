"""Scheduler and worker: fan-out and exactly-once window delivery (docs/invariants.md).

messages: the queue message; scheduler: the timer's fan-out under a lease, read from the due index;
sweep: the hourly check of that index against every integration; worker: the queue
trigger's job loop over due windows; attempt: one whole window's export and its run record; split and
parts: a large window's plan and its parts' jobs; staging: the service's storage for the parts a destination takes not in place;
failures: what a failed attempt means; state: the integration's state changes; delivery: how a job
ends; stores: a window's working state in our storage; poison: a job that kept failing. Replay is an
API operation (exporter.integrations.replay).
"""

from .messages import ExportJob
from .poison import PoisonOutcome, record_poison
from .scheduler import ScheduleOutcome, schedule
from .sweep import SweepOutcome, sweep, sweep_unless_recent
from .worker import JobOutcome, process_job

__all__ = [
    "ExportJob",
    "JobOutcome",
    "PoisonOutcome",
    "ScheduleOutcome",
    "SweepOutcome",
    "process_job",
    "record_poison",
    "schedule",
    "sweep",
    "sweep_unless_recent",
]
