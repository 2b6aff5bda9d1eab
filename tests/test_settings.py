"""Settings from the environment, as the Functions host passes app settings."""

import json
from pathlib import Path

import pytest

from exporter.errors import ConfigurationError
from exporter.settings import DEFAULT_CONNECTION, Settings
from exporter.storage import Storage
from tests.helpers import TUNING_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = {
    "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
}


def test_defaults_are_the_documented_ones():
    s = Settings.from_env({})
    assert (s.storage_connection, s.settle_seconds, s.queue_name, s.poison_queue_name) == (
        DEFAULT_CONNECTION,
        120,
        "export-jobs",
        "export-jobs-poison",
    )
    assert (s.max_windows_per_run, s.max_seconds_per_run, s.lease_seconds, s.ucd_commit_timeout_seconds) == (
        12,
        240,
        600,
        20,
    )


def test_the_apps_own_storage_may_be_the_emulators_shorthand():
    """AzureWebJobsStorage=UseDevelopmentStorage=true (the default) goes to the SDK, which knows Azurite's ports;
    only customer destinations refuse the shorthand."""
    storage = Storage(Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}))
    assert storage.blobs.url.startswith("http://127.0.0.1:10000/devstoreaccount1")
    assert storage.queue().url == "http://127.0.0.1:10001/devstoreaccount1/export-jobs"
    assert storage.table_service.url.startswith("http://127.0.0.1:10002/devstoreaccount1")


def test_the_sample_lists_every_setting_the_app_reads():
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    read = {"AzureWebJobsStorage", "EXPORT_SECRET_KEY", *TUNING_SETTINGS}
    assert read <= set(values)
    sample = Settings.from_env({k: v for k, v in values.items() if k != "EXPORT_SECRET_KEY"})
    assert sample.settle_seconds == 120 and sample.queue_name == "export-jobs"


def test_bad_values_name_the_setting():
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"EXPORT_SETTLE_SECONDS": "soon"})
    assert error.value.field == "EXPORT_SETTLE_SECONDS"
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({"EXPORT_SETTLE_SECONDS": "30", "UCD_COMMIT_TIMEOUT_SECONDS": "20"})
    assert error.value.field == "UCD_COMMIT_TIMEOUT_SECONDS", "a commit must fit well inside settle"


def test_identity_based_storage_uses_the_service_uris_without_a_connection_string():
    s = Settings.from_env(IDENTITY)
    assert s.storage_connection == ""
    storage = Storage(s)
    assert storage.blobs.url.startswith("https://acct.blob.core.windows.net")
    assert storage.table_service.url.startswith("https://acct.table.core.windows.net")
    assert storage.queue().url == "https://acct.queue.core.windows.net/export-jobs"


def test_identity_settings_must_come_together():
    with pytest.raises(ConfigurationError):
        Settings.from_env({"AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net"})


def test_storage_that_refuses_the_apps_key_is_a_configuration_error_naming_the_setting(azurite_connection):
    from exporter.storage import storage_for

    wrong = ";".join(
        "AccountKey=a2V5a2V5a2V5" if p.startswith("AccountKey=") else p for p in azurite_connection.split(";")
    )
    with pytest.raises(ConfigurationError) as refused:
        storage_for(Settings(storage_connection=wrong, table_prefix="tkey"))
    assert refused.value.field == "AzureWebJobsStorage" and "403" in refused.value.message


def test_the_secret_key_is_demanded_on_first_use_only():
    from exporter.secrets import SecretBox

    box = SecretBox("")  # building it asks nothing: an operation without secrets runs without a key
    for use in (lambda: box.seal("x"), lambda: box.open("token")):
        with pytest.raises(ConfigurationError) as refused:
            use()
        assert refused.value.field == "EXPORT_SECRET_KEY" and "not set" in refused.value.message
