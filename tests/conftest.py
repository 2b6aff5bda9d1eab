"""Shared fixtures: one Azurite, moto and GCS emulator per run, isolated storage names per test, an
injected clock, and a customer destination of each type (`kit`).

Under pytest-xdist (`-n 2`, the README's command) the controller starts the servers CI did not give once,
before the workers exist, and the workers inherit them through the same EXPORT_TEST_* variables CI sets:
every worker shares them, and storage names stay unique per test (a random `tag`), so workers never meet.
"""

from __future__ import annotations

import os
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from exporter.clock import ManualClock
from exporter.context import Context
from exporter.local.cloudservers import (
    S3_MIN_PART_BYTES,
    TEST_S3_MIN_PART_BYTES,
    GcsEmulator,
    MotoServer,
    TokenEndpoint,
    start_gcs_emulator,
    start_moto,
)
from exporter.local.devstorage import start_azurite
from exporter.local.faultproxy import FaultProxy
from exporter.settings import Settings
from exporter.storage import adopt_storage, forget_storage, shared_settings
from tests.destination_helpers import BUCKET_PREFIX, KINDS, make_kit
from tests.helpers import SECRET_KEY, T0, endpoint, integration_body
from tests.storage_kit import LazyStorage

# The local servers (Azurite, moto, the GCS emulator, test receivers) are on loopback over http: the egress
# policy allows them in tests (and in the CLI subprocesses tests start). tests/test_egress*.py put a strict
# policy in force where they need one.
os.environ["EXPORT_ALLOW_PRIVATE_ENDPOINTS"] = "true"
# Every server the tests reach is on loopback, never behind a proxy: with loopback in no_proxy, requests answers
# "no proxy" at once instead of scanning the environment's proxy settings (urllib's getproxies) twice for every
# request, about a tenth of a light test's CPU.
os.environ["no_proxy"] = ",".join(["127.0.0.1", "localhost", "::1", *filter(None, [os.environ.get("no_proxy")])])

pytest_plugins = ["tests.browser_kit"]  # the browser tests' Chromium, one per test process

_STARTED = pytest.StashKey[list]()


def pytest_configure(config: pytest.Config) -> None:
    """xdist's controller starts the servers the environment does not name, once for all its workers."""
    distributing = getattr(config.option, "dist", "no") != "no"
    if not distributing or hasattr(config, "workerinput") or config.option.collectonly:
        return
    started: list = []
    config.stash[_STARTED] = started
    try:
        if not os.environ.get("EXPORT_TEST_STORAGE"):
            azurite = start_azurite()
            started.append(azurite)
            _export(config, EXPORT_TEST_STORAGE=azurite.connection_string)
        if not os.environ.get("EXPORT_TEST_S3"):
            moto = start_moto(min_part_bytes=TEST_S3_MIN_PART_BYTES)
            started.append(moto)
            _export(
                config,
                EXPORT_TEST_S3=moto.url,
                EXPORT_TEST_S3_ACCESS_KEY_ID=moto.access_key_id,
                EXPORT_TEST_S3_SECRET_ACCESS_KEY=moto.secret_access_key,
                EXPORT_TEST_S3_MIN_PART_BYTES=str(moto.min_part_bytes),
            )
        if not os.environ.get("EXPORT_TEST_GCS"):
            gcs = start_gcs_emulator()
            started.append(gcs)
            _export(config, EXPORT_TEST_GCS=gcs.url)
    except BaseException:
        pytest_unconfigure(config)
        raise


_EXPORTED = pytest.StashKey[list]()


def _export(config: pytest.Config, **values: str) -> None:
    """Set variables for the workers to inherit (they start after pytest_configure), removed at the end."""
    config.stash.setdefault(_EXPORTED, []).extend(values)
    os.environ.update(values)


def pytest_unconfigure(config: pytest.Config) -> None:
    for server in config.stash.get(_STARTED, []):
        server.stop()
    config.stash[_STARTED] = []
    for name in config.stash.get(_EXPORTED, []):
        os.environ.pop(name, None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`pytestmark = pytest.mark.slow_tests("test_a", "test_b[gcs]")` marks those tests of the module `slow`
    (before `-m "not slow"` deselects). A name that is no test function of the module is an error, so a
    rename cannot quietly move a test into the quick loop. `runs_first` tests are moved to the front."""
    for item in items:
        module = item.getparent(pytest.Module)
        names = [name for mark in module.iter_markers("slow_tests") for name in mark.args] if module else []
        for name in names:
            if not callable(getattr(module.obj, name.partition("[")[0], None)):
                raise pytest.UsageError(f"{module.nodeid}: slow_tests names no test {name!r}")
        if item.name in names or getattr(item, "originalname", None) in names:
            item.add_marker(pytest.mark.slow)
    # `runs_first` modules (the soak: about 100 s on one worker) go first: xdist hands out work in this order.
    items.sort(key=lambda item: item.get_closest_marker("runs_first") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """xdist's `--dist loadgroup` keeps an `xdist_group`'s tests on one worker by a suffix on their ids; a pytest
    that drops the suffix (9.2: pytest-dev/pytest-xdist#1386) would spread them, and the soak would run once
    per worker. Refuse to run rather than run it twice."""
    if getattr(session.config.option, "loadgroup", False):
        spread = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
        if spread:
            raise pytest.UsageError(f"xdist_group is ignored by this pytest and pytest-xdist: {spread[:3]}")


def given_or_started(given, start, use=lambda server: server):
    """What CI started (`given`), or `use(server)` of a server started here and stopped at the end of the session."""
    if given:
        yield given
        return
    server = start()
    try:
        yield use(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_connection() -> str:
    """Azurite from CI (EXPORT_TEST_STORAGE) or a private one started on free ports."""
    given = os.environ.get("EXPORT_TEST_STORAGE")
    yield from given_or_started(given, start_azurite, lambda azurite: azurite.connection_string)


@pytest.fixture(autouse=True)
def _storage_closed():
    """Each test's app storage (Context.create shares one per settings per process, for the life of the process)
    is forgotten and its connections closed when the test ends: a worker would otherwise keep every test's
    clients, thousands of sockets and their buffers, and Azurite as many idle connections."""
    before = shared_settings()
    yield
    for settings in shared_settings() - before:
        storage = forget_storage(settings)
        if storage is not None:
            storage.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def settings(azurite_connection: str, tag: str) -> Settings:
    """The test's own names; its Storage (any Context.create on these settings) creates each table, queue and
    container on first use (tests/storage_kit.py), and is closed at the test's end (`_storage_closed`)."""
    settings = Settings(
        storage_connection=azurite_connection,
        table_prefix=f"t{tag}",
        queue_name=f"jobs-{tag}",
        ucd_container=f"ucd-{tag}",
        secret_key=SECRET_KEY,
        allow_private_endpoints=True,
    )
    adopt_storage(LazyStorage(settings))
    return settings


@pytest.fixture
def table_proxy(azurite_connection: str):
    """A fault-injecting proxy in front of Azurite's Table service (see tests.helpers.through)."""
    proxy = FaultProxy(endpoint(azurite_connection, "Table")).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ctx(settings: Settings, clock: ManualClock) -> Context:
    return Context.create(settings, clock)


@pytest.fixture
def blob_service(azurite_connection: str) -> BlobServiceClient:
    with BlobServiceClient.from_connection_string(azurite_connection) as service:
        yield service


@pytest.fixture
def customer_container(blob_service: BlobServiceClient, tag: str):
    """The customer's own container (on the same Azurite account)."""
    container = blob_service.create_container(f"cust-{tag}")
    return container


@pytest.fixture
def customer_body(azurite_connection: str, customer_container) -> dict:
    """An integration body (tests.helpers.integration_body) into the customer's container."""
    return integration_body(azurite_connection, customer_container.container_name)


@pytest.fixture
def scratch_container(blob_service: BlobServiceClient, tag: str):
    """A second container on the same account, for clean re-exports to compare bytes with."""
    return blob_service.create_container(f"scratch-{tag}")


@pytest.fixture(scope="session")
def moto_s3() -> MotoServer:
    """moto with IAM enforcement: from CI (EXPORT_TEST_S3 and its admin key) or started here on first use. Its
    minimum part size is the suite's (`TEST_S3_MIN_PART_BYTES`) or, for a server started without saying, AWS's."""
    env = os.environ
    given = None
    if env.get("EXPORT_TEST_S3"):
        given = MotoServer(
            env["EXPORT_TEST_S3"],
            env["EXPORT_TEST_S3_ACCESS_KEY_ID"],
            env["EXPORT_TEST_S3_SECRET_ACCESS_KEY"],
            min_part_bytes=int(env.get("EXPORT_TEST_S3_MIN_PART_BYTES", S3_MIN_PART_BYTES)),
        )
    yield from given_or_started(given, lambda: start_moto(min_part_bytes=TEST_S3_MIN_PART_BYTES))


@pytest.fixture(scope="session")
def s3_kit_key(moto_s3: MotoServer) -> dict[str, str]:
    """The access key of one IAM user per session (per xdist worker) allowed everything on every kit's bucket
    (they are all named "b..."). A user per kit cost three IAM calls a test, and moto looks a request's key
    up among all its users. A test that needs a user of its own policy makes one (`s3.server.create_user`)."""
    return moto_s3.create_user(f"kits-{uuid.uuid4().hex[:8]}", ["s3:*"], f"{BUCKET_PREFIX}*")


@pytest.fixture(scope="session")
def gcs_emulator() -> GcsEmulator:
    """gcp-storage-emulator: from CI (EXPORT_TEST_GCS) or started here on first use."""
    given = os.environ.get("EXPORT_TEST_GCS")
    yield from given_or_started(GcsEmulator(given) if given else None, start_gcs_emulator)


@pytest.fixture(scope="session")
def token_endpoint() -> TokenEndpoint:
    """The loopback OAuth token endpoint the test service-account keys name as their token_uri."""
    yield from given_or_started(None, lambda: TokenEndpoint().start())


@pytest.fixture(params=[kind if kind == KINDS[0] else pytest.param(kind, marks=pytest.mark.slow) for kind in KINDS])
def kit(request, tag):
    """A customer destination of each type in turn (tests/destination_helpers.py): tests using it run once per type.
    Only the Azure Blob run is in the quick loop (`-m "not slow"`); the S3 and GCS runs are `slow`."""
    return make_kit(request, request.param, tag)


@pytest.fixture
def s3(request, tag):
    """An S3 bucket on moto, as a kit."""
    return make_kit(request, "s3", tag)


@pytest.fixture
def gcs(request, tag):
    """A GCS bucket on the emulator, as a kit."""
    return make_kit(request, "gcs", tag)


@pytest.fixture
def azure_kit(request, tag):
    """A customer destination on Azurite only, for scenarios in which the destination type plays no part."""
    return make_kit(request, "azure_blob", tag)


@pytest.fixture
def scratch_kit(request, kit, tag):
    """A second, empty destination of the same type as `kit` (for clean re-exports)."""
    return make_kit(request, kit.kind, tag + "s")


@pytest.fixture
def azure_scratch_kit(request, tag):
    """A second, empty destination on Azurite, for clean re-exports of an `azure_kit` scenario."""
    return make_kit(request, "azure_blob", tag + "s")
