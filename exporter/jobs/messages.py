"""The export job queue message: which integration to bring up to date. Never carries a secret."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ExportJob:
    """A queue message: which integration to bring up to date. Never carries a secret."""

    account: str
    integration_id: str
    reason: str = "scheduled"

    def to_message(self) -> str:
        return json.dumps({"account": self.account, "integration_id": self.integration_id, "reason": self.reason})

    @classmethod
    def from_message(cls, body: str) -> ExportJob:
        data = json.loads(body)
        return cls(str(data["account"]), str(data["integration_id"]), str(data.get("reason", "scheduled")))
