"""Wiring: one place that builds the app's parts from settings and a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import Clock, SystemClock
from .destinations import open_destination as default_destination
from .export.destination import Destination
from .history import HistoryRepo
from .identity import ExternalIds, Opening, PlatformIdentity, identity_json, opening_for
from .integrations.due import DueIndex
from .integrations.model import Integration
from .integrations.repo import IntegrationRepo
from .integrations.service import IntegrationService
from .runs import RunRepo
from .secrets import SecretBox
from .settings import Settings
from .storage import DUE_TABLE, IDENTITIES_TABLE, INTEGRATIONS_TABLE, RUNS_TABLE, Storage, storage_for
from .ucd import UcdStore


@dataclass
class Context:
    settings: Settings
    clock: Clock
    storage: Storage
    ucd: UcdStore
    repo: IntegrationRepo
    runs: RunRepo
    integrations: IntegrationService
    open_destination: Callable[..., Destination] = field(default=default_destination)

    def __post_init__(self) -> None:
        from .notifications.outbox import ChangeTeller  # a recovery is told, from the service's write

        self.integrations.teller = ChangeTeller(self)

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        clock: Clock | None = None,
        open_destination: Callable[..., Destination] = default_destination,
    ) -> Context:
        settings = settings or Settings.from_env()
        clock = clock or SystemClock()
        storage = storage_for(settings)
        ucd = UcdStore(storage, clock)
        repo = IntegrationRepo(
            storage.table(INTEGRATIONS_TABLE), DueIndex(storage.table(DUE_TABLE), settings.settle_seconds)
        )
        runs = RunRepo(storage.table(RUNS_TABLE))
        service = IntegrationService(
            repo,
            runs,
            HistoryRepo(storage, clock),
            SecretBox(settings.secret_key),
            clock,
            open_destination,
            catalog=ucd.catalog,
            opening=lambda account, session: _opening(settings, storage, account, session),
        )
        return cls(settings, clock, storage, ucd, repo, runs, service, open_destination)

    def destination_for(self, integration: Integration) -> Destination:
        """The integration's destination client, with its secret decrypted only here (opened for its account)."""
        d = integration.destination
        with opening_for(_opening(self.settings, self.storage, integration.account, integration.id)):
            return self.open_destination(d.type, self.integrations.secrets.open(d.sealed_secret), d.container, d.prefix)

    def identity(self, account: str) -> dict:
        """The platform's identity to grant, with the account's external id (made on the first ask)."""
        external_id = ExternalIds(self.storage.table(IDENTITIES_TABLE)).of(account)
        return identity_json(PlatformIdentity.from_settings(self.settings), external_id)


def _opening(settings: Settings, storage: Storage, account: str, session: str) -> Opening:
    """Who a destination is opened for (keyless credentials read it); the external id is read on demand."""
    return Opening(
        account,
        session,
        lambda: ExternalIds(storage.table(IDENTITIES_TABLE)).of(account),
        PlatformIdentity.from_settings(settings),
    )
