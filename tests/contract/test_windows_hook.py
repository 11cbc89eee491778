"""azure.yaml's preprovision hook on both kinds of machine azd runs on: posix (entra-app.sh) and native Windows
(entra-app.ps1, PowerShell), and the minimum azd version the web_identity flow needs. azd picks a hook by
runtime.GOOS, so without a windows entry azd on Windows has an empty `run` and refuses every provision, the default
mode included. The PowerShell hook is not run here (no pwsh on this machine): it is checked to exist, to name every
variable the POSIX hook decides on or sets, to pass the default mode and to refuse web_identity with what to do.

Each check is proven on a broken copy: azure.yaml without the windows hook, a hook script that forgets a variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
AZURE_YAML = ROOT / "azure.yaml"
SH = ROOT / "infra" / "hooks" / "entra-app.sh"
PS1 = ROOT / "infra" / "hooks" / "entra-app.ps1"
DEPLOY_DOCS = ROOT / "docs" / "deploy.md"


def hook_problems(azure_yaml: str) -> list[str]:
    config: dict[str, Any] = yaml.safe_load(azure_yaml)
    hook = (config.get("hooks") or {}).get("preprovision") or {}
    expected = {"posix": ("sh", "infra/hooks/entra-app.sh"), "windows": ("pwsh", "infra/hooks/entra-app.ps1")}
    problems = []
    for platform, (shell, run) in expected.items():
        entry = hook.get(platform)
        if not isinstance(entry, dict):
            problems.append(f"preprovision has no {platform} hook")
            continue
        if (entry.get("shell"), entry.get("run")) != (shell, run):
            problems.append(f"preprovision.{platform} is {entry.get('shell')} {entry.get('run')}, not {shell} {run}")
        if entry.get("continueOnError") is not False:
            problems.append(f"preprovision.{platform} must stop the provision when it fails")
        if not (ROOT / run).is_file():
            problems.append(f"{run} does not exist")
    return problems


def hook_variables(sh: str) -> set[str]:
    """What the POSIX hook decides on (AWS_AUTH_MODE, the audience) and what it stores in the azd environment."""
    return {"AWS_AUTH_MODE", "AWS_WEB_IDENTITY_AUDIENCE"} | set(re.findall(r"azd env set (\w+)", sh))


def missing_variables(sh: str, ps1: str) -> set[str]:
    return {name for name in hook_variables(sh) if not re.search(rf"\b{name}\b", ps1)}


def test_azure_yaml_has_a_hook_for_posix_and_for_windows() -> None:
    assert hook_problems(AZURE_YAML.read_text(encoding="utf-8")) == []


def test_a_posix_only_azure_yaml_is_caught() -> None:
    text = AZURE_YAML.read_text(encoding="utf-8")
    posix_only = text.split("    windows:\n", 1)[0]
    assert posix_only != text
    assert hook_problems(posix_only) == ["preprovision has no windows hook"]


def test_the_powershell_hook_names_every_variable_of_the_posix_hook() -> None:
    sh, ps1 = SH.read_text(encoding="utf-8"), PS1.read_text(encoding="utf-8")
    assert {"AWS_WEB_IDENTITY_APP_ID", "AWS_WEB_IDENTITY_AUDIENCE"} <= hook_variables(sh)
    assert missing_variables(sh, ps1) == set()
    forgetful = ps1.replace("AWS_WEB_IDENTITY_APP_ID", "the application id")
    assert missing_variables(sh, forgetful) == {"AWS_WEB_IDENTITY_APP_ID"}


def test_the_powershell_hook_passes_the_default_mode_and_refuses_web_identity_with_what_to_do() -> None:
    ps1 = PS1.read_text(encoding="utf-8")
    # access_key (the default, also when AWS_AUTH_MODE is unset) exits 0 before anything else
    default = re.search(r"\$mode = if \(\$env:AWS_AUTH_MODE\) \{ \$env:AWS_AUTH_MODE \} else \{ 'access_key' \}", ps1)
    passes = re.search(r"if \(\$mode -ne 'web_identity'\) \{\n(    .*\n)*?    exit 0\n\}", ps1)
    assert default and passes and default.start() < passes.start()
    assert ps1.index("exit 0") < ps1.index("exit 1")
    refusal = ps1[ps1.index("$message = @'"):]
    for advice in ("WSL, Linux or macOS", "azd env set AWS_WEB_IDENTITY_APP_ID",
                   "azd env set AWS_WEB_IDENTITY_AUDIENCE", "docs/deploy.md", "access_key"):
        assert advice in refusal, advice
    assert refusal.rstrip().endswith("exit 1")
    # "${mode}:", not "$mode:": PowerShell reads "$mode:" as a drive-qualified variable and stops with a parse error
    assert not re.search(r'"[^"\n]*\$(?!env:)\w+:', ps1)


def test_azd_is_new_enough_to_read_what_the_hook_sets() -> None:
    config = yaml.safe_load(AZURE_YAML.read_text(encoding="utf-8"))
    required = config["requiredVersions"]["azd"]
    match = re.fullmatch(r">= ?(\d+)\.(\d+)\.(\d+)", required)
    assert match and tuple(map(int, match.groups())) >= (1, 21, 0), required
    assert "Azure/azure-dev#3973" in AZURE_YAML.read_text(encoding="utf-8")


def test_the_docs_tell_the_truth_about_windows() -> None:
    docs = DEPLOY_DOCS.read_text(encoding="utf-8")
    assert "Git Bash" not in docs.replace("Git Bash does not", "")  # only ever mentioned as not helping
    assert "entra-app.ps1" in docs and "WSL" in docs
