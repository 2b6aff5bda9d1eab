"""Integrations: what a customer exports, where to, how often, and how far delivery has got."""

from .model import Integration
from .service import IntegrationService

__all__ = ["Integration", "IntegrationService"]
