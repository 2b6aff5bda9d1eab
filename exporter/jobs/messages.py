"""The export job queue message: which integration to bring up to date. Never carries a secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json


FOLLOW_UP = "follow-up"  # a job's reason: it continues a job before it (a catch-up, or a window whose time ran out)


@dataclass(frozen=True)
class ExportJob:
    """A queue message: which integration to bring up to date, or which part of a split window to export.

    Never carries a secret: a part names its window by start and its part by index; the plan is in storage.
    """

    account: str
    integration_id: str
    reason: str = "scheduled"
    window_start: int | None = None  # with `part`: one part of this window (exporter/jobs/parts.py)
    part: int | None = None

    def to_message(self) -> str:
        body: dict[str, Json] = {"account": self.account, "integration_id": self.integration_id, "reason": self.reason}
        if self.part is not None:
            body.update(window_start=self.window_start, part=self.part)
        return json.dumps(body)

    @classmethod
    def from_message(cls, body: str) -> ExportJob:
        data = json.loads(body)
        part = data.get("part")
        return cls(
            str(data["account"]),
            str(data["integration_id"]),
            str(data.get("reason", "scheduled")),
            int(data["window_start"]) if part is not None else None,
            int(part) if part is not None else None,
        )


@dataclass(frozen=True)
class FanOut:
    """A queue message carrying many integrations' jobs: the worker that receives it sends each as its own
    message (exporter/jobs/scheduler.py). A minute with thousands due costs the timer one send per
    FAN_OUT_SIZE jobs; the sends themselves spread over the workers."""

    jobs: tuple[ExportJob, ...]

    def to_message(self) -> str:
        return json.dumps({"fan_out": [[job.account, job.integration_id] for job in self.jobs]})

    @classmethod
    def from_message(cls, body: str) -> FanOut | None:
        """The fan-out in `body`, or None when it is another message."""
        try:
            data = json.loads(body)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("fan_out"), list):
            return None
        return cls(tuple(ExportJob(str(account), str(integration_id)) for account, integration_id in data["fan_out"]))
