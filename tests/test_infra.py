"""Offline checks of the Bicep in infra/.

The Bicep compiler cannot be installed offline, so `az bicep build` and what-if belong in a networked
pipeline. Here every file is parsed with pycep-parser (a Lark grammar of Bicep), which catches syntax
errors, and the parsed trees are checked for the facts a regression would most likely break: module
paths, the Flex Consumption plan and Python version, the storage data roles, the outbound IP output,
the app settings the code reads, and host.json's timeout against the per-run bound.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from exporter.settings import Settings
from tests.helpers import TUNING_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "app" / "functionapp.bicep"
ROLES = INFRA / "app" / "roles.bicep"
STORAGE = INFRA / "app" / "storage.bicep"
ALERTS = INFRA / "app" / "alerts.bicep"

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
EXPECTED_MODULES = {"storage", "monitoring", "identity", "keyvault", "functionapp", "alerts", "roles"}

# Built-in role definition ids (the same in every tenant).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

# Settings the Functions host owns (Flex Consumption refuses FUNCTIONS_WORKER_RUNTIME as an app
# setting; AzureWebJobsStorage is replaced by its identity-based AzureWebJobsStorage__* form).
HOST_OWNED = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


@cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def sample_values() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def resources(tree: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Resources of one type, name -> body (the body of a loop or an `if` is unwrapped)."""
    return {
        name: body(resource)
        for name, resource in tree.get("resources", {}).items()
        if resource["type"].lower() == type_.lower()
    }


def body(resource: dict[str, Any]) -> dict[str, Any]:
    config = resource["config"]
    while "loop_type" in config or "condition" in config:
        config = config["config"]
    return config


def resolve(expr: Any, tree: dict[str, Any]) -> Any:
    """Follow variable names, param defaults and `a.b` accessors to a literal where possible."""
    if isinstance(expr, str):
        if expr in tree.get("variables", {}):
            return resolve(tree["variables"][expr]["value"], tree)
        param = tree.get("parameters", {}).get(expr)
        if param is not None and param.get("default") is not None:
            return resolve(param["default"], tree)
        return expr
    if isinstance(expr, list):
        return [resolve(item, tree) for item in expr]
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        operands = expr["operator"]["operands"]
        base = resolve(operands["operand_1"], tree)
        if isinstance(base, dict) and isinstance(operands["operand_2"], str) and operands["operand_2"] in base:
            return resolve(base[operands["operand_2"]], tree)
    return expr


def mentions(expr: Any, word: str) -> bool:
    return word in json.dumps(expr, default=str)


# ---------------------------------------------------------------------------------------------- parse


def test_infra_has_main_and_every_module():
    assert MAIN in BICEP_FILES
    assert {p.stem for p in (INFRA / "app").glob("*.bicep")} >= EXPECTED_MODULES


@pytest.mark.parametrize("path", BICEP_FILES, ids=[str(p.relative_to(INFRA)) for p in BICEP_FILES])
def test_bicep_file_parses(path: Path):
    try:
        tree = BicepParser().parse(file_path=path)
    except Exception as error:  # noqa: BLE001 - lark's UnexpectedInput family, or pycep's ValueError
        pytest.fail(f"{path.relative_to(ROOT)} is not valid Bicep:\n{error}")
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_every_param_is_described():
    for path in BICEP_FILES:
        for name, param in parse(path).get("parameters", {}).items():
            kinds = {d["type"] for d in param.get("decorators", [])}
            assert "description" in kinds, f"{path.name}: param {name} has no @description"


# ---------------------------------------------------------------------------------------------- main


def test_module_paths_exist_and_are_local():
    modules = parse(MAIN)["modules"]
    referenced = set()
    for name, module in modules.items():
        assert module["type"] == "local", f"module {name} is not a local file (no registry modules)"
        target = (INFRA / module["detail"]["path"]).resolve()
        assert target.is_file(), f"module {name} references missing {module['detail']['path']}"
        referenced.add(target)
    unused = {p.resolve() for p in (INFRA / "app").glob("*.bicep")} - referenced
    assert not unused, f"modules never used by main.bicep: {sorted(p.name for p in unused)}"


def test_main_outputs_outbound_ip_addresses():
    outputs = parse(MAIN)["outputs"]
    outbound = {name: out for name, out in outputs.items() if mentions(out["value"], "possibleOutboundIpAddresses")}
    assert outbound, "main.bicep has no output with the app's possible outbound IP addresses"
    assert all(out["type"] == "array" for out in outbound.values())
    # ... and the function app module really reads them from the site.
    module_out = parse(FUNCTION_APP)["outputs"]["possibleOutboundIpAddresses"]
    assert mentions(module_out["value"], "site") and mentions(module_out["value"], "possibleOutboundIpAddresses")
    for name in ("functionAppName", "functionAppDefaultHostName", "storageAccountName", "keyVaultName"):
        assert name in outputs, f"main.bicep lacks output {name}"


def test_secret_key_param_is_secure():
    param = parse(MAIN)["parameters"]["exportSecretKey"]
    assert "secure" in {d["type"] for d in param["decorators"]}
    # No key in the template: required on the first deployment, empty on redeploys keeps the stored one.
    assert param.get("default") in (None, ""), "the Fernet key must never have a real default"
    keyvault = parse(INFRA / "app" / "keyvault.bicep")
    (secret,) = resources(keyvault, "Microsoft.KeyVault/vaults/secrets").values()
    assert resolve(secret["name"], keyvault) == "export-secret-key"
    assert "secure" in {d["type"] for d in keyvault["parameters"]["exportSecretKey"]["decorators"]}


# ---------------------------------------------------------------------------------------------- function app


def test_function_app_is_flex_consumption_python_311():
    tree = parse(FUNCTION_APP)
    plans = list(resources(tree, "Microsoft.Web/serverfarms").values())
    assert len(plans) == 1
    assert plans[0]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plans[0]["properties"]["reserved"] is True, "Linux plans need reserved: true"

    sites = list(resources(tree, "Microsoft.Web/sites").values())
    assert len(sites) == 1
    site = sites[0]
    assert "linux" in site["kind"]
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert set(config["scaleAndConcurrency"]) == {"maximumInstanceCount", "instanceMemoryMB"}
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert parse(MAIN)["modules"]["functionApp"]["config"]["params"]["instanceMemoryMB"] == 2048


def app_settings() -> dict[str, Any]:
    tree = parse(FUNCTION_APP)
    configs = [c for c in resources(tree, "Microsoft.Web/sites/config").values() if c["name"] == "appsettings"]
    assert len(configs) == 1, "functionapp.bicep must have exactly one sites/config 'appsettings'"
    settings = resolve(configs[0]["properties"], tree)
    assert isinstance(settings, dict)
    return {key: resolve(value, tree) for key, value in settings.items()}


@pytest.mark.skipif(not (ROOT / "local.settings.sample.json").exists(), reason="no local.settings.sample.json yet")
def test_app_settings_cover_local_settings_sample():
    settings = app_settings()
    sample = sample_values()
    local_only = {"EXPORT_ALLOW_PRIVATE_ENDPOINTS"}  # loopback endpoints: never deployed (tests/test_egress.py)
    missing = set(sample) - HOST_OWNED - local_only - set(settings)
    assert not missing, f"app settings missing from functionapp.bicep: {sorted(missing)}"
    assert not HOST_OWNED & set(settings), (
        "Flex Consumption: no FUNCTIONS_WORKER_RUNTIME / key-based AzureWebJobsStorage"
    )
    # The tuning settings deploy with the sample's defaults.
    for key in TUNING_SETTINGS:
        assert settings[key] == sample[key], f"{key}: bicep {settings[key]!r} != sample {sample[key]!r}"


def test_app_settings_are_identity_based():
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for key in ("clientId", "blobServiceUri", "queueServiceUri", "tableServiceUri"):
        assert f"AzureWebJobsStorage__{key}" in settings
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    assert "Authorization=AAD" in settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert settings["EXPORT_SECRET_KEY"].startswith("@Microsoft.KeyVault(SecretUri=")


def test_function_timeout_exceeds_max_seconds_per_run():
    host = json.loads((ROOT / "host.json").read_text())
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d)", host["functionTimeout"])
    assert match, f"unexpected functionTimeout {host['functionTimeout']!r}"
    hours, minutes, seconds = map(int, match.groups())
    timeout = hours * 3600 + minutes * 60 + seconds
    assert timeout > int(sample_values()["EXPORT_MAX_SECONDS_PER_RUN"])
    assert timeout > int(app_settings()["EXPORT_MAX_SECONDS_PER_RUN"])


# ---------------------------------------------------------------------------------------------- roles, storage, alerts


def role_ids_by_scope() -> dict[str, set[str]]:
    """Scope resource type -> role definition ids assigned on it in roles.bicep."""
    tree = parse(ROLES)
    types = {name: r["type"] for name, r in tree["resources"].items()}
    found: dict[str, set[str]] = {}
    for _name, resource in tree["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        outer, inner = resource["config"], body(resource)
        role = inner["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        if "loop_type" in outer and role == outer["loop_type"]["detail"]["item_name"]:
            ids = resolve(outer["loop_type"]["detail"]["array_name"], tree)
        else:
            ids = [resolve(role, tree)]
        found.setdefault(types[inner["scope"]], set()).update(ids)
    return found


def test_role_assignments_grant_the_data_roles():
    roles = role_ids_by_scope()
    assert roles["Microsoft.Storage/storageAccounts"] >= {
        STORAGE_BLOB_DATA_OWNER,
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
        STORAGE_TABLE_DATA_CONTRIBUTOR,
    }
    assert MONITORING_METRICS_PUBLISHER in roles["Microsoft.Insights/components"]
    assert KEY_VAULT_SECRETS_USER in roles["Microsoft.KeyVault/vaults"]


def test_storage_account_is_keyless_with_queues_and_ucd_container():
    tree = parse(STORAGE)
    (account,) = resources(tree, "Microsoft.Storage/storageAccounts").values()
    assert account["properties"]["allowSharedKeyAccess"] is False
    assert account["properties"]["minimumTlsVersion"] == "TLS1_2"
    assert resources(tree, "Microsoft.Storage/storageAccounts/tableServices")
    text = MAIN.read_text() + STORAGE.read_text()
    assert "'ucd'" in text and "'export-jobs'" in text and "-poison'" in text


def test_staged_parts_have_their_container_and_a_lifecycle_rule():
    tree = parse(STORAGE)
    staging = Settings(ucd_container="ucd").staging_container
    containers = tree["resources"]["containers"]["config"]["loop_type"]["detail"]["array_name"]
    assert staging == "ucd-staging" and "${ucdContainerName}-staging" in containers
    (policy,) = resources(tree, "Microsoft.Storage/storageAccounts/managementPolicies").values()
    (rule,) = policy["properties"]["policy"]["rules"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${ucdContainerName}-staging/"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert resolve(delete["daysAfterModificationGreaterThan"], tree) == 7


def test_alerts_watch_the_export_metrics():
    rules = resources(parse(ALERTS), "Microsoft.Insights/scheduledQueryRules")
    by_metric = {}
    for rule in rules.values():
        query = rule["properties"]["criteria"]["allOf"][0]["query"]
        for metric in ("export.lag", "export.poison_messages", "export.credential_errors"):
            if f'"{metric}"' in query:
                by_metric[metric] = rule["properties"]
    assert set(by_metric) == {"export.lag", "export.poison_messages", "export.credential_errors"}
    assert by_metric["export.poison_messages"]["severity"] == 1
    assert by_metric["export.credential_errors"]["severity"] == 3
    assert all("customMetrics" in p["criteria"]["allOf"][0]["query"] for p in by_metric.values())


# ---------------------------------------------------------------------------------------------- cross-checks
# What a Bicep compiler would catch and the parser does not: module parameter and output names.


def accessor_chain(expr: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"] when expr is a plain property access (or a name), else None."""
    if isinstance(expr, str):
        return [expr]
    if isinstance(expr, dict) and set(expr) == {"operator"} and expr["operator"].get("type") == "property_accessor":
        head = accessor_chain(expr["operator"]["operands"]["operand_1"])
        tail = accessor_chain(expr["operator"]["operands"]["operand_2"])
        if head is not None and tail is not None:
            return head + tail
    return None


def accessor_chains(expr: Any):
    """Every property-access chain of two or more names anywhere in a parsed tree."""
    chain = accessor_chain(expr)
    if chain is not None and len(chain) > 1:
        yield chain
    elif isinstance(expr, dict):
        for value in expr.values():
            yield from accessor_chains(value)
    elif isinstance(expr, list):
        for item in expr:
            yield from accessor_chains(item)


def module_tree(module: dict[str, Any]) -> dict[str, Any]:
    return parse((INFRA / module["detail"]["path"]).resolve())


def test_a_syntax_error_fails_the_parse(tmp_path: Path):
    """The parse check is real: a copy of a module with one missing colon is refused."""
    text = (INFRA / "app" / "identity.bicep").read_text()
    broken_text = text.replace("location: location\n", "location location\n", 1)
    assert broken_text != text
    broken = tmp_path / "broken.bicep"
    broken.write_text(broken_text)
    with pytest.raises(Exception):  # noqa: B017 - lark's UnexpectedInput family, or pycep's ValueError
        BicepParser().parse(file_path=broken)


def test_main_passes_every_required_module_param_and_no_unknown_one():
    for name, module in parse(MAIN)["modules"].items():
        declared = module_tree(module).get("parameters", {})
        passed = set(module["config"].get("params", {}))
        assert not passed - set(declared), (
            f"module {name} gets params it does not declare: {sorted(passed - set(declared))}"
        )
        required = {p for p, spec in declared.items() if spec.get("default") is None}
        assert required <= passed, f"module {name} misses required params: {sorted(required - passed)}"


def test_main_reads_only_outputs_that_modules_declare():
    tree = parse(MAIN)
    modules = tree["modules"]
    seen = 0
    for chain in accessor_chains(tree):
        if chain[0] in modules and len(chain) >= 3 and chain[1] == "outputs":
            seen += 1
            assert chain[2] in module_tree(modules[chain[0]]).get("outputs", {}), f"{'.'.join(chain)} does not exist"
    assert seen, "main.bicep reads no module output"


def test_function_app_waits_for_its_roles():
    depends = parse(MAIN)["modules"]["functionApp"]["config"].get("dependsOn", [])
    assert "roles" in depends, "the function app must be deployed after the identity's role assignments"


def test_key_vault_uses_rbac_and_the_app_references_its_secret():
    keyvault = parse(INFRA / "app" / "keyvault.bicep")
    (vault,) = resources(keyvault, "Microsoft.KeyVault/vaults").values()
    assert vault["properties"]["enableRbacAuthorization"] is True
    # The app setting points at the secret without a version, through the module output.
    secret_uri = parse(MAIN)["modules"]["functionApp"]["config"]["params"]["exportSecretUri"]
    assert accessor_chain(secret_uri) == ["keyVault", "outputs", "exportSecretUri"]
    assert not mentions(keyvault["outputs"]["exportSecretUri"], "secretUriWithVersion")
    assert not any(mentions(out, "exportSecretKey") for out in parse(MAIN)["outputs"].values())


def test_no_app_setting_that_flex_consumption_refuses():
    refused = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "AzureWebJobsStorage",
    }
    assert not refused & set(app_settings())
    assert not [k for k, v in app_settings().items() if isinstance(v, (bool, int))], "app settings are strings"


def test_parameters_example_matches_main():
    example = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parse(MAIN)["parameters"]
    assert not set(example) - set(declared), (
        f"unknown params in main.parameters.json: {sorted(set(example) - set(declared))}"
    )
    secure = {p for p, spec in declared.items() if "secure" in {d["type"] for d in spec["decorators"]}}
    assert not secure & set(example), "main.parameters.json must not hold the Fernet key"
    required = {p for p, spec in declared.items() if spec.get("default") is None} - secure
    assert required <= set(example), f"main.parameters.json misses {sorted(required - set(example))}"
