"""The notifications' wire form (pure): CloudEvents 1.0 structured JSON, signed as Standard Webhooks sign.

The id is a function of the integration, the window and the type, so every retry (of the send, of the
job that caused it) carries the same id and a receiver deduplicates by it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from .config import secret_key

TYPES = {
    "stopped": "export.integration.stopped",
    "recovered": "export.integration.recovered",
    "delivered": "export.window.delivered",
}


@dataclass(frozen=True)
class Event:
    """One thing to tell: its kind (one of config.EVENTS) and its data (account, integration, window, ...)."""

    kind: str
    account: str
    integration_id: str
    window_start: int
    window_end: int
    details: tuple[tuple[str, Any], ...] = ()  # file, rows, bytes, sha256; reason for a stop

    @property
    def id(self) -> str:
        return f"{self.integration_id}-{self.window_start}-{self.kind}"

    def cloud_event(self, time: str) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "source": f"/accounts/{self.account}/integrations/{self.integration_id}",
            "type": TYPES[self.kind],
            "subject": f"windows/{self.window_start}",
            "time": time,
            "datacontenttype": "application/json",
            "data": {
                "account": self.account,
                "integration_id": self.integration_id,
                "window": {"start": self.window_start, "end": self.window_end},
                **dict(self.details),
            },
        }


def body_bytes(cloud_event: dict[str, Any]) -> bytes:
    return json.dumps(cloud_event, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(message_id: str, timestamp: int, body: bytes, secret: str) -> dict[str, str]:
    """Standard Webhooks headers: `v1,` + base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" under the secret's bytes."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/cloudevents+json; charset=utf-8",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
    }
