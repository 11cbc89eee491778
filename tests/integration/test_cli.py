"""The command line as a person uses it: the demo, a dry run, and bad settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.tools import cli
from shared.tools.cli import main
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.azure_fakes import AzureFakes, azure_fixture, fake_tls_fixture  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_findings_and_leaves_both_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "shared", "demo", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert result.returncode == 0, result.stderr
    assert "Succeeded - 3 of 3 account(s)" in result.stdout
    assert "ROOT ACCOUNT KEY" in result.stdout and "rotation due" in result.stdout
    assert "Total" in result.stdout
    assert "[3/3]" in result.stderr  # progress: accounts done of total
    keys = [json.loads(line) for line in (out / "AwsIamAccessKeys.jsonl").read_text().splitlines()]
    runs = [json.loads(line) for line in (out / "AwsIamKeyCollectorRuns.jsonl").read_text().splitlines()]
    # two runs, keys changed in between (one created, one deleted, one rotated: 24 keys again)
    assert len(runs) == 2 and [r["KeysCollected"] for r in runs] == [24, 24] and len(keys) == 48
    assert [k["RunId"] for k in keys] == [runs[0]["RunId"]] * 24 + [runs[1]["RunId"]] * 24
    # the kill-first list, each row with its reasons: the root key first, then the user AWS quarantined
    kill_first = result.stdout.split("Kill first (")[1].split("\n\n")[0].splitlines()[3:]
    assert kill_first[0].split()[:3] == ["85", kill_first[0].split()[1], "<root_account>"]
    assert "build-agent" in kill_first[1] and "quarantined by AWS (key exposed in public) +40" in kill_first[1]
    assert {k["AccountName"] for k in keys} == {"Management", "Production", "Sandbox"}
    assert "Run 1 of 2" in result.stderr and "Run 2 of 2" in result.stderr
    assert "Between the two runs:" in result.stderr and "Management/alice: access key rotated" in result.stderr
    assert "Changed between the two runs (the report's timeline): Production/frank: new access key created" in (
        result.stdout)
    assert [line for line in result.stdout.splitlines() if line.startswith("123456789012  Management")]
    assert (out / "report.html").is_file() and f"Report: {out / 'report.html'}" in result.stdout
    # Owners and exceptions: grouped by owner, unowned keys a finding, one exception in force, one expired.
    lines = result.stdout.splitlines()
    by_owner = lines.index("Findings by owner (active keys of IAM users):")
    assert lines[by_owner + 1].split()[:4] == ["Owner", "Active", "Quarantined", "Rotation"]
    assert any(line.startswith("(no owner)") for line in lines[by_owner:]) and "no owner" in result.stdout
    assert any(line.startswith("platform-team@example.com") for line in lines[by_owner:])
    excepted = lines.index("Excepted (accepted risk, left out of the counts above):")
    assert "deploy-bot" in lines[excepted + 3] and "platform-team@example.com" in lines[excepted + 3]
    # counted nowhere else; ranked as if it were not excepted (an exception lowers no score), and said so
    in_kill_first = [line for line in lines if "deploy-bot" in line and line.startswith("35 ")]
    assert [line for line in lines if "deploy-bot" in line] == [*in_kill_first, lines[excepted + 3]]
    assert len(in_kill_first) == 1 and in_kill_first[0].rstrip().endswith("yes")
    expired = next(i for i, line in enumerate(lines) if line.startswith("Expired exceptions in "))
    assert lines[expired + 1].startswith("  entry 2 (userArn arn:aws:iam::") and "* - expired " in lines[expired + 1]
    assert any("ci-runner" in line and "rotation due" in line for line in lines)  # counted again
    assert {k["UserName"] for k in keys if k["Excepted"]} == {"deploy-bot"}
    assert {k["Owner"] for k in keys if k["UserName"] == "alice"} == {"alice@example.com"}
    # the owner digests it would send: written, not sent, one per owner with keys due or overdue and the fallback
    assert "Owner digests (dry_run): " in result.stdout and f"written to {out / 'digests'}" in result.stdout
    (day,) = (out / "digests").iterdir()
    assert (day / "kim@example.com.json").is_file() and (day / "security-team@example.com.json").is_file()


def test_dry_run_prints_records_and_sends_nothing(
    aws: AwsProxy, moto_url: str, azure: AzureFakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org: SeededOrganization = seed_organization(moto_url)
    # web_identity + file: the managed identity (the fake, trusted through the test-only client options: a CA bundle
    # variable in the environment is refused) gives the token; no Key Vault, no AWS secret.
    monkeypatch.setattr(cli, "CLIENT_OPTIONS", azure.options())
    for name, value in {
        "AWS_AUTH_MODE": "web_identity", "AWS_WEB_IDENTITY_AUDIENCE": "api://AzureADTokenExchange",
        "AWS_ROLE_ARN": org.home_role_arn, "AWS_ACCOUNTS": "organization", "LOG_SINK": "file",
        "FILE_SINK_DIR": str(tmp_path / "out"),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["collect", "--dry-run"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    keys = [r for r in lines if r["Table"] == "AwsIamAccessKeys_CL"]
    runs = [r for r in lines if r["Table"] == "AwsIamKeyCollectorRuns_CL"]
    assert len(keys) == org.expected_keys and len(runs) == 1 and runs[0]["AuthMode"] == "web_identity"
    assert "Succeeded" in captured.err
    assert not (tmp_path / "out").exists()  # nothing sent, no outbox touched
    assert "AssumeRoleWithWebIdentity" in aws.actions()


def test_bad_settings_exit_2_with_every_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "LOG", "KEY_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCOUNTS", "12345")
    assert main(["collect"]) == 2
    err = capsys.readouterr().err
    assert "AWS_ROLE_ARN: required" in err and "AWS_ACCOUNTS: expected home, organization" in err
    assert "Traceback" not in err


def test_notify_from_a_folder_writes_the_digests_and_its_record(tmp_path: Path) -> None:
    """`python -m shared notify --in DIR`: the file sink's records there, the rule of shared/notify/digest.py, the
    digests in DIR/digests/ (dry_run), the run record beside the records; no owner and no fallback: counted."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    stamp = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (tmp_path / "AwsIamKeyCollectorRuns.jsonl").write_text(json.dumps(
        {"TimeGenerated": stamp, "RunId": "r1", "Status": "Succeeded", "FailedAccounts": "[]"}) + "\n")
    keys = [{"TimeGenerated": stamp, "RunId": "r1", "AccountId": "111122223333", "UserName": name,
             "AccessKeyId": f"AKIA...000{n}", "AccessKeyFingerprint": f"{n:016x}", "Status": "Active",
             "CreatedAt": (now - timedelta(days=83, hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "LastUsedAt": stamp, "NeverUsed": False, "Unused": False, "Excepted": False, "Owner": owner}
            for n, (name, owner) in enumerate((("kim", "kim@example.com"), ("svc", "")))]
    (tmp_path / "AwsIamAccessKeys.jsonl").write_text("".join(json.dumps(k) + "\n" for k in keys))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "LOG_SINK", "FILE_SINK_DIR"))}
    result = subprocess.run([sys.executable, "-m", "shared", "notify", "--in", str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "1 digest(s) for keys due or overdue, 1 written" in result.stdout
    assert "1 finding(s) of keys without an owner went to nobody" in result.stdout
    (day,) = (tmp_path / "digests").iterdir()
    assert sorted(p.name for p in day.iterdir()) == ["kim@example.com.html", "kim@example.com.json",
                                                     "kim@example.com.txt"]
    assert "in 7 day(s)" in (day / "kim@example.com.txt").read_text()
    (record,) = [json.loads(line) for line in (tmp_path / "AwsIamOwnerDigestRuns.jsonl").read_text().splitlines()]
    assert (record["DigestsBuilt"], record["RowsWithoutRecipient"], record["Status"]) == (1, 1, "Succeeded")
