"""Notifications to the customer: an integration's `notify` url is told when it stops, recovers, and
when each window's file is delivered (CloudEvents 1.0, signed as Standard Webhooks sign)."""

from __future__ import annotations

from .config import (
    EVENTS,
    NotifyConfig,
    NotifyRequest,
    check_notify_url,
    new_secret,
    notify_after,
    parse_notify,
    with_secret,
)

__all__ = [
    "EVENTS",
    "NotifyConfig",
    "NotifyRequest",
    "check_notify_url",
    "new_secret",
    "notify_after",
    "parse_notify",
    "with_secret",
]
