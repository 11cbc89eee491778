"""What docs/ says about the deployment, checked against what ships: the number of alert rules (counted in
infra/modules/alerts.bicep), the files of the deployment package (computed from .funcignore), and a path from an empty
subscription to the first rows for Linux/macOS and for Windows. Each check is proven on a broken copy."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

from tests.support import bicep

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
           10: "ten", 11: "eleven", 12: "twelve"}


def alert_rule_count() -> int:
    tree = bicep.parse(bicep.INFRA / "modules" / "alerts.bicep")
    return sum(r["type"] == "Microsoft.Insights/scheduledQueryRules" for r in tree["resources"].values())


def alert_count_problems(text: str, expected: int) -> list[str]:
    said = re.findall(r"\b(\w+)\*{0,2} (?:log search )?alert rules\b", text)
    numbers = [w for w in said if w in NUMBERS.values() or w.isdigit()]
    return [f"says {w} alert rules, there are {expected}" for w in numbers
            if w not in (NUMBERS.get(expected), str(expected))]


def packaged() -> set[str]:
    patterns = [line.strip().rstrip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    top = {path.split("/")[0] for path in tracked.splitlines()}
    return {name for name in top if not any(fnmatch.fnmatch(name, p) for p in patterns)}


def package_problems(text: str) -> list[str]:
    section = text.split("## .funcignore", 1)[1].split("\n## ", 1)[0]
    return [f"the package list leaves out {name}" for name in sorted(packaged())
            if f"`{name}`" not in section and f"`{name}/`" not in section]


def test_the_docs_count_the_alert_rules() -> None:
    count = alert_rule_count()
    assert count >= 7  # the count is read from alerts.bicep; the docs must say it in words
    for name in ("deploy.md", "insight.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        assert re.search(rf"\b{NUMBERS[count]}\*{{0,2}} alert rules", text), name
        assert alert_count_problems(text, count) == [], name
    assert alert_count_problems("the workbook and four alert rules (root key, ...)", count) == [
        f"says four alert rules, there are {count}"]


def test_the_docs_list_every_file_of_the_package() -> None:
    assert {"function_app.py", "host.json", "requirements.txt", "shared", "exceptions.json"} <= packaged()
    text = (DOCS / "azure.md").read_text(encoding="utf-8")
    assert package_problems(text) == []
    assert package_problems(text.replace("`exceptions.json`", "the exceptions")) == [
        "the package list leaves out exceptions.json"]


def test_every_step_from_an_empty_subscription_for_linux_and_windows() -> None:
    text = (DOCS / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## Every step, from an empty subscription to the first rows", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| # |"))
    assert "Linux / macOS" in header and "Windows" in header
    steps = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(line.split("|")[1]) for line in steps] == list(range(len(steps)))
    for needed in ("1.21.0", "azd auth login", "az provider register --namespace Microsoft.App", "azd env new",
                   "azd up", "AWS_HOME_STACK_PARAMETERS", "AWS_ROLE_ARN", "azd provision", "AwsIamKeyCollectorRuns_CL",
                   "web_identity on Windows", "PowerShell"):
        assert needed in section, needed
    assert all(line.count("|") >= 4 and line.split("|")[3].strip() for line in steps), "a step without Windows"
