"""The console's sign-in in infra/: App Service Authentication (Microsoft Entra ID) on the function app,
API calls with function keys let through, and the development sign-in never configured in Azure."""

from __future__ import annotations

import json
from pathlib import Path

from pycep import BicepParser

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_APP = ROOT / "infra" / "app" / "functionapp.bicep"


def _auth() -> dict:
    tree = BicepParser().parse(file_path=FUNCTION_APP)
    (auth,) = [r["config"] for r in tree["resources"].values() if r["config"].get("name") == "authsettingsV2"]
    return auth["properties"]


def test_app_service_authentication_signs_console_users_in_with_entra_id():
    auth = _auth()
    aad = auth["identityProviders"]["azureActiveDirectory"]
    assert "consoleClientId" in json.dumps(aad["registration"]["clientId"], default=str)
    assert "/v2.0" in json.dumps(aad["registration"]["openIdIssuer"], default=str)
    # No client secret: the app's managed identity is the app registration's federated credential.
    assert aad["registration"]["clientSecretSettingName"] == "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
    assert "consoleClientId" in json.dumps(auth["platform"]["enabled"], default=str)
    assert auth["httpSettings"]["requireHttps"] is True


def test_function_key_calls_are_not_sent_to_a_sign_in_page():
    validation = _auth()["globalValidation"]
    assert validation["unauthenticatedClientAction"] == "AllowAnonymous"
    assert validation["requireAuthentication"] is False


def test_the_development_sign_in_is_never_configured_in_azure():
    for path in (ROOT / "infra").rglob("*"):
        if path.is_file() and path.suffix != ".md":
            code = [line for line in path.read_text().splitlines() if not line.strip().startswith("//")]
            assert not any("EXPORT_CONSOLE_DEV_SIGN_IN" in line for line in code), path
            assert not any("WEBSITE_AUTH_ENABLED" in line for line in code), path  # the platform sets it
