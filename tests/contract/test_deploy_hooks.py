"""The azd preprovision hook infra/hooks/entra-app.sh, run by a real POSIX shell against stand-ins for the `az` and
`azd` CLIs (small scripts on PATH that keep the tenants' applications and the azd environment in a JSON file and log
every call), so that its decisions can be checked without a tenant: only web_identity creates anything; the
application gets its ID URI as the audience and v1 tokens; a second provision finds it again; an audience of the
operator's own is left alone. And what it refuses (issue 24, F8; issue 23): an application it did not create — one
found only by its display name, or one AWS_WEB_IDENTITY_APP_ID names without this environment's record — and an Azure
CLI signed in to another tenant than the subscription azd deploys to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HOOK = Path(__file__).resolve().parents[2] / "infra" / "hooks" / "entra-app.sh"

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SUBSCRIPTION = "11111111-2222-4333-8444-555555555555"

# One stand-in for both CLIs: argv[0]'s name says which. State: {"tenant": the tenant az is signed in to,
# "subscriptions": {id: tenant}, "apps": [...], "sps": [...], "env": {...}, "calls": [...]}. Graph calls (ad, rest)
# see only the applications of the signed-in tenant, as they do in Entra.
FAKE_CLI = r"""
import json, os, sys, uuid
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
tool = os.path.basename(sys.argv[0])
state["calls"].append([tool, *args])
def arg(name):
    return args[args.index(name) + 1]
def save():
    json.dump(state, open(state_path, "w"))
def fail(message):
    save()
    sys.exit(message)
apps = [a for a in state["apps"] if a["tenant"] == state["tenant"]]
out = ""
if tool == "azd" and args[:2] == ["env", "set"]:
    state["env"][args[2]] = args[3]
elif args[:2] == ["account", "show"] and "--subscription" in args:
    assert arg("--query") == "tenantId"
    if arg("--subscription") not in state["subscriptions"]:
        fail(f"ERROR: Subscription '{arg('--subscription')}' not found. Check the spelling and casing and try again.")
    out = state["subscriptions"][arg("--subscription")]
elif args[:2] == ["account", "show"]:
    assert arg("--query") == "tenantId"
    if state["tenant"] is None:
        fail("ERROR: Please run 'az login' to setup account.")
    out = state["tenant"]
elif args[:3] == ["ad", "app", "list"]:
    assert arg("--query") == "[].appId"
    out = "\n".join(a["appId"] for a in apps if a["displayName"] == arg("--display-name"))
elif args[:3] == ["ad", "app", "create"]:
    assert arg("--query") == "[appId, id]"
    app = {"appId": str(uuid.uuid4()), "id": str(uuid.uuid4()), "displayName": arg("--display-name"),
           "signInAudience": arg("--sign-in-audience"), "identifierUris": [], "api": {}, "tenant": state["tenant"]}
    state["apps"].append(app)
    out = app["appId"] + "\n" + app["id"]
elif args[:3] == ["ad", "app", "show"]:
    assert arg("--query") == "appId"
    found = [a for a in apps if arg("--id") in (a["appId"], a["id"])]  # Graph accepts either id
    if not found:
        fail(f"ERROR: Resource '{arg('--id')}' does not exist or one of its queried reference-property objects"
             " are not present.")
    out = found[0]["appId"]
elif args[:1] == ["rest"]:
    assert arg("--method") == "PATCH"
    object_id = arg("--uri").rsplit("/", 1)[1]
    (app,) = [a for a in apps if a["id"] == object_id]
    app.update(json.loads(arg("--body")))
elif args[:3] == ["ad", "sp", "list"]:
    app_id = arg("--filter").split("'")[1]
    out = app_id if app_id in state["sps"] else ""
elif args[:3] == ["ad", "sp", "create"]:
    state["sps"].append(arg("--id"))
else:
    fail(f"unexpected call: {tool} {args}")
save()
print(out)
"""

WEB_IDENTITY = {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}


def new_state(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "tenant": TENANT, "subscriptions": {SUBSCRIPTION: TENANT}, "apps": [], "sps": [], "env": {}, "calls": []
    }
    return {**state, **changes}


def run_hook(
    tmp_path: Path, env: dict[str, str], state: dict[str, Any] | None = None, *, refused: bool = False
) -> dict[str, Any]:
    """Runs the hook; returns the stand-ins' final state with its stdout and stderr. `refused`: it must exit non-zero
    (and the state must show that nothing in Entra was changed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("az", "azd"):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
        script.chmod(0o755)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state or new_state()))
    result = subprocess.run(
        ["sh", str(HOOK)],
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "FAKE_STATE": str(state_path), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if refused:
        assert result.returncode != 0, result.stdout + result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    final: dict[str, Any] = json.loads(state_path.read_text())
    final["stdout"] = result.stdout
    final["stderr"] = result.stderr
    if refused:
        changes = [c for c in final["calls"] if c[1:2] == ["rest"] or "create" in c or c[1:3] == ["env", "set"]]
        assert changes == [], changes
    return final


def test_access_key_mode_creates_nothing(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "access_key"})
    assert state["calls"] == [] and state["apps"] == []
    assert run_hook(tmp_path, {"AZURE_ENV_NAME": "prod"})["calls"] == []  # the default mode is access_key


def test_web_identity_creates_the_application_whose_id_uri_is_the_audience(tmp_path: Path) -> None:
    state = run_hook(tmp_path, WEB_IDENTITY)
    (app,) = state["apps"]
    assert app["displayName"] == "aws-iam-key-collector-prod"
    assert app["signInAudience"] == "AzureADMyOrg"
    assert app["tenant"] == TENANT
    audience = f"api://{app['appId']}"
    assert app["identifierUris"] == [audience]
    assert app["api"] == {"requestedAccessTokenVersion": 1}  # v1 tokens: issuer https://sts.windows.net/<tenant>/
    assert state["sps"] == [app["appId"]]  # the managed identity can get tokens for it
    assert state["env"] == {
        "AWS_WEB_IDENTITY_APP_ID": app["appId"],
        "AWS_WEB_IDENTITY_APP_OBJECT_ID": app["id"],  # this environment's record that it created the application
        "AWS_WEB_IDENTITY_AUDIENCE": audience,
    }
    assert audience in state["stdout"]
    # The record is written right after the creation, before the application is changed.
    calls = [c[:4] for c in state["calls"]]
    create = calls.index(["az", "ad", "app", "create"])
    assert calls[create + 1 : create + 3] == [
        ["azd", "env", "set", "AWS_WEB_IDENTITY_APP_ID"],
        ["azd", "env", "set", "AWS_WEB_IDENTITY_APP_OBJECT_ID"],
    ]
    assert calls.index(["az", "rest", "--method", "PATCH"]) > create + 2


def test_web_identity_finds_its_application_again(tmp_path: Path) -> None:
    first = run_hook(tmp_path, WEB_IDENTITY)
    (app,) = first["apps"]
    again = run_hook(tmp_path, {**WEB_IDENTITY, **first["env"]}, {**first, "calls": []})
    assert again["apps"] == [app] and again["sps"] == [app["appId"]]
    assert again["env"] == first["env"]
    assert not [c for c in again["calls"] if c[1:3] in (["ad", "app"], ["ad", "sp"]) and "create" in c]
    assert not [c for c in again["calls"] if c[1:4] == ["ad", "app", "list"]]  # found by its record, not its name


def test_the_tenant_comes_from_azds_environment_once_provisioned(tmp_path: Path) -> None:
    """After the first provision AZURE_TENANT_ID (a Bicep output) is in the azd environment: no subscription lookup."""
    state = run_hook(tmp_path, {**WEB_IDENTITY, "AZURE_TENANT_ID": TENANT.upper()})
    assert len(state["apps"]) == 1
    assert not [c for c in state["calls"] if "--subscription" in c]


def test_shared_token_exchange_audience_is_replaced(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {**WEB_IDENTITY, "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange"})
    (app,) = state["apps"]
    assert state["env"]["AWS_WEB_IDENTITY_AUDIENCE"] == f"api://{app['appId']}"


def test_an_audience_of_your_own_is_left_alone(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {**WEB_IDENTITY, "AWS_WEB_IDENTITY_AUDIENCE": "api://my-own-app"})
    assert state["calls"] == [] and state["env"] == {}


# --------------------------------------------------------------------------------------------------------------------
# Refused: an application this environment did not create, and the wrong tenant


def someone_elses_app(name: str = "aws-iam-key-collector-prod", tenant: str = TENANT) -> dict[str, Any]:
    return {"appId": "9b1f2e3d-4c5b-4a69-8877-665544332211", "id": "0c0c0c0c-1d1d-4e2e-8f3f-404040404040",
            "displayName": name, "signInAudience": "AzureADMultipleOrgs", "tenant": tenant,
            "identifierUris": ["api://attacker"], "api": {}}


def test_an_application_precreated_with_the_expected_name_is_refused(tmp_path: Path) -> None:
    """Any member of the tenant can create `aws-iam-key-collector-<env>` first; the hook neither adopts it nor rewrites
    its identifier URIs, and says which application it is and what to do."""
    planted = someone_elses_app()
    state = run_hook(tmp_path, WEB_IDENTITY, new_state(apps=[planted]), refused=True)
    assert state["apps"] == [planted] and state["env"] == {} and state["sps"] == []
    message = state["stderr"]
    assert "aws-iam-key-collector-prod" in message and planted["appId"] in message and TENANT in message
    assert "did not create it" in message
    assert "azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID" in message  # how to adopt one that really is this env's


def test_a_lost_azd_environment_is_refused_until_the_application_is_recorded_again(tmp_path: Path) -> None:
    """A new machine has no record: the application of the same name is refused like a planted one; once the operator
    records its ids (after checking its owners), the hook adopts it."""
    first = run_hook(tmp_path, WEB_IDENTITY)
    (app,) = first["apps"]
    lost = run_hook(tmp_path, WEB_IDENTITY, {**first, "env": {}, "calls": []}, refused=True)
    assert app["appId"] in lost["stderr"] and lost["apps"] == [app]
    recorded = {"AWS_WEB_IDENTITY_APP_ID": app["appId"], "AWS_WEB_IDENTITY_APP_OBJECT_ID": app["id"]}
    again = run_hook(tmp_path, {**WEB_IDENTITY, **recorded}, {**lost, "env": recorded, "calls": []})
    assert again["apps"] == [app] and again["env"]["AWS_WEB_IDENTITY_AUDIENCE"] == f"api://{app['appId']}"


def test_an_app_id_this_environment_did_not_create_is_refused(tmp_path: Path) -> None:
    """AWS_WEB_IDENTITY_APP_ID alone (no record of creating it) names someone else's application: not rewritten."""
    other = someone_elses_app(name="payroll-api")
    state = run_hook(tmp_path, {**WEB_IDENTITY, "AWS_WEB_IDENTITY_APP_ID": other["appId"]},
                     new_state(apps=[other]), refused=True)
    assert state["apps"] == [other]
    assert other["appId"] in state["stderr"] and "no record of creating it" in state["stderr"]
    assert "AWS_WEB_IDENTITY_AUDIENCE" in state["stderr"]  # the way to use an application of one's own


def test_a_record_whose_ids_disagree_is_refused(tmp_path: Path) -> None:
    """The object id of one application with the app id of another: neither is touched."""
    first = run_hook(tmp_path, WEB_IDENTITY)
    other = someone_elses_app(name="payroll-api")
    state = {**first, "apps": [*first["apps"], other], "calls": []}
    env = {**WEB_IDENTITY, "AWS_WEB_IDENTITY_APP_ID": other["appId"],
           "AWS_WEB_IDENTITY_APP_OBJECT_ID": first["env"]["AWS_WEB_IDENTITY_APP_OBJECT_ID"]}
    refused = run_hook(tmp_path, env, state, refused=True)
    assert refused["apps"] == state["apps"] and "inconsistent" in refused["stderr"]


def test_a_recorded_application_that_is_gone_is_refused(tmp_path: Path) -> None:
    first = run_hook(tmp_path, WEB_IDENTITY)
    state = run_hook(tmp_path, {**WEB_IDENTITY, **first["env"]}, {**first, "apps": [], "calls": []}, refused=True)
    assert state["apps"] == [] and "is not in tenant" in state["stderr"]


def test_ids_that_are_not_guids_are_refused(tmp_path: Path) -> None:
    """They go into a Graph URI and an OData filter."""
    env = {**WEB_IDENTITY, "AWS_WEB_IDENTITY_APP_ID": "x' or true or 'x", "AWS_WEB_IDENTITY_APP_OBJECT_ID": "../me"}
    state = run_hook(tmp_path, env, refused=True)
    assert "not an application (client) id" in state["stderr"]


def test_a_cli_signed_in_to_another_tenant_is_refused(tmp_path: Path) -> None:
    """az signed in to another directory than the subscription's: the application would be created where the AWS
    trust (https://sts.windows.net/<subscription's tenant>/) never sees it. Nothing is looked up or created."""
    state = run_hook(tmp_path, WEB_IDENTITY, new_state(tenant=OTHER_TENANT,
                                                       subscriptions={SUBSCRIPTION: TENANT}), refused=True)
    assert state["apps"] == []
    assert not [c for c in state["calls"] if c[1:2] in (["ad"], ["rest"])]
    message = state["stderr"]
    assert OTHER_TENANT in message and TENANT in message and SUBSCRIPTION in message
    assert f"az login --tenant {TENANT}" in message


def test_a_tenant_mismatch_with_azds_recorded_tenant_is_refused(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {**WEB_IDENTITY, "AZURE_TENANT_ID": TENANT}, new_state(tenant=OTHER_TENANT),
                     refused=True)
    assert state["apps"] == [] and f"az login --tenant {TENANT}" in state["stderr"]


def test_a_cli_that_cannot_see_the_subscription_is_refused(tmp_path: Path) -> None:
    state = run_hook(tmp_path, WEB_IDENTITY, new_state(tenant=OTHER_TENANT, subscriptions={}), refused=True)
    assert state["apps"] == [] and SUBSCRIPTION in state["stderr"] and "cannot see" in state["stderr"]


def test_a_cli_not_signed_in_is_refused(tmp_path: Path) -> None:
    state = run_hook(tmp_path, WEB_IDENTITY, new_state(tenant=None), refused=True)
    assert "az login" in state["stderr"]


def test_the_same_name_in_another_tenant_does_not_count(tmp_path: Path) -> None:
    """Graph lists only the signed-in tenant's applications: one of that name elsewhere is neither refused nor used."""
    elsewhere = someone_elses_app(tenant=OTHER_TENANT)
    state = run_hook(tmp_path, WEB_IDENTITY, new_state(apps=[elsewhere]))
    assert len(state["apps"]) == 2 and state["apps"][0] == elsewhere
    assert state["env"]["AWS_WEB_IDENTITY_APP_ID"] == state["apps"][1]["appId"]


def test_azure_yaml_runs_the_hook_before_provisioning() -> None:
    text = (HOOK.parents[2] / "azure.yaml").read_text()
    assert "preprovision:" in text and "run: infra/hooks/entra-app.sh" in text
    assert os.access(HOOK, os.X_OK)
