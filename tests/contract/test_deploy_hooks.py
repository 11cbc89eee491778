"""The azd preprovision hook infra/hooks/entra-app.sh, run by a real POSIX shell against stand-ins for the `az` and
`azd` CLIs (small scripts on PATH that keep the tenant's applications and the azd environment in a JSON file and log
every call), so that its decisions can be checked without a tenant: only web_identity creates anything; the
application gets its ID URI as the audience and v1 tokens; a second provision finds it again; an audience of the
operator's own is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HOOK = Path(__file__).resolve().parents[2] / "infra" / "hooks" / "entra-app.sh"

# One stand-in for both CLIs: argv[0]'s name says which. State: {"apps": [...], "sps": [...], "env": {...}}.
FAKE_CLI = r'''
import json, os, sys, uuid
state_path = os.environ["FAKE_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
tool = os.path.basename(sys.argv[0])
state["calls"].append([tool, *args])
def arg(name):
    return args[args.index(name) + 1]
out = ""
if tool == "azd" and args[:2] == ["env", "set"]:
    state["env"][args[2]] = args[3]
elif args[:3] == ["ad", "app", "list"]:
    found = [a for a in state["apps"] if a["displayName"] == arg("--display-name")]
    out = found[0]["appId"] if found else ""
elif args[:3] == ["ad", "app", "create"]:
    app = {"appId": str(uuid.uuid4()), "id": str(uuid.uuid4()), "displayName": arg("--display-name"),
           "signInAudience": arg("--sign-in-audience"), "identifierUris": [], "api": {}}
    state["apps"].append(app)
    out = app["appId"]
elif args[:3] == ["ad", "app", "show"]:
    (app,) = [a for a in state["apps"] if a["appId"] == arg("--id")]
    out = app["id"]
elif args[:1] == ["rest"]:
    assert arg("--method") == "PATCH"
    object_id = arg("--uri").rsplit("/", 1)[1]
    (app,) = [a for a in state["apps"] if a["id"] == object_id]
    app.update(json.loads(arg("--body")))
elif args[:3] == ["ad", "sp", "list"]:
    app_id = arg("--filter").split("'")[1]
    out = app_id if app_id in state["sps"] else ""
elif args[:3] == ["ad", "sp", "create"]:
    state["sps"].append(arg("--id"))
else:
    sys.exit(f"unexpected call: {tool} {args}")
json.dump(state, open(state_path, "w"))
print(out)
'''


def run_hook(tmp_path: Path, env: dict[str, str], state: dict[str, Any] | None = None) -> dict[str, Any]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("az", "azd"):
        script = bin_dir / tool
        script.write_text(f"#!{sys.executable}\n{FAKE_CLI}")
        script.chmod(0o755)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state or {"apps": [], "sps": [], "env": {}, "calls": []}))
    result = subprocess.run(
        ["sh", str(HOOK)],
        env={"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "FAKE_STATE": str(state_path), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    final: dict[str, Any] = json.loads(state_path.read_text())
    final["stdout"] = result.stdout
    return final


def test_access_key_mode_creates_nothing(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "access_key"})
    assert state["calls"] == [] and state["apps"] == []
    assert run_hook(tmp_path, {"AZURE_ENV_NAME": "prod"})["calls"] == []  # the default mode is access_key


def test_web_identity_creates_the_application_whose_id_uri_is_the_audience(tmp_path: Path) -> None:
    state = run_hook(tmp_path, {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity"})
    (app,) = state["apps"]
    assert app["displayName"] == "aws-iam-key-collector-prod"
    assert app["signInAudience"] == "AzureADMyOrg"
    audience = f"api://{app['appId']}"
    assert app["identifierUris"] == [audience]
    assert app["api"] == {"requestedAccessTokenVersion": 1}  # v1 tokens: issuer https://sts.windows.net/<tenant>/
    assert state["sps"] == [app["appId"]]  # the managed identity can get tokens for it
    assert state["env"] == {"AWS_WEB_IDENTITY_APP_ID": app["appId"], "AWS_WEB_IDENTITY_AUDIENCE": audience}
    assert audience in state["stdout"]


def test_web_identity_finds_its_application_again(tmp_path: Path) -> None:
    first = run_hook(tmp_path, {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity"})
    (app,) = first["apps"]
    again = run_hook(
        tmp_path,
        {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity", **first["env"]},
        {**first, "calls": []},
    )
    assert again["apps"] == [app] and again["sps"] == [app["appId"]]
    assert not [c for c in again["calls"] if c[1:3] in (["ad", "app"], ["ad", "sp"]) and "create" in c]
    # Lost azd environment (a new machine): found by its display name.
    lost = run_hook(tmp_path, {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity"}, {**first, "calls": []})
    assert lost["apps"] == [app] and lost["env"]["AWS_WEB_IDENTITY_AUDIENCE"] == f"api://{app['appId']}"


def test_shared_token_exchange_audience_is_replaced(tmp_path: Path) -> None:
    state = run_hook(
        tmp_path,
        {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange"},
    )
    (app,) = state["apps"]
    assert state["env"]["AWS_WEB_IDENTITY_AUDIENCE"] == f"api://{app['appId']}"


def test_an_audience_of_your_own_is_left_alone(tmp_path: Path) -> None:
    state = run_hook(
        tmp_path,
        {"AZURE_ENV_NAME": "prod", "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://my-own-app"},
    )
    assert state["calls"] == [] and state["env"] == {}


def test_azure_yaml_runs_the_hook_before_provisioning() -> None:
    text = (HOOK.parents[2] / "azure.yaml").read_text()
    assert "preprovision:" in text and "run: infra/hooks/entra-app.sh" in text
    assert os.access(HOOK, os.X_OK)
