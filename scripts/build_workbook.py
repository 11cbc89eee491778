"""Build the Azure Monitor workbook (infra/workbook/aws-iam-keys.workbook.json) from the query files in queries/.

Every query of the workbook is the text of one ``queries/*.kql`` file, unchanged; drill-down tables get one line
appended, the account filter. Run ``python scripts/build_workbook.py`` after changing a query; ``--check`` exits 1 when
the committed JSON is not the generated one (tests/contract/test_queries.py checks the same).

The Bicep (infra/modules/workbook.bicep) loads the JSON with loadTextContent and replaces WORKSPACE_PLACEHOLDER with
the workspace's resource id, so the workbook opens on that workspace from the gallery too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python scripts/build_workbook.py`: the app's package is beside scripts/
    sys.path.insert(0, str(ROOT))

from shared.findings.catalogue import FINDINGS, ROOT_KEY  # noqa: E402 - needs the path above

QUERIES = ROOT / "queries"
WORKBOOK = ROOT / "infra" / "workbook" / "aws-iam-keys.workbook.json"
WORKSPACE_PLACEHOLDER = "__WORKSPACE_RESOURCE_ID__"
WORKSPACE_TYPE = "microsoft.operationalinsights/workspaces"
ACCOUNT_FILTER = "| where '*' in ({Account}) or AccountId in ({Account})"
DEFAULT_LOOKBACK_DAYS = 7
CHART_SUFFIX = "-chart"  # the name of an item charting a query that also has a table
TAB_PARAMETER = "selectedTab"  # set by the tab strip; each tab is a group shown when it holds that tab's value
# (value, label) of the tabs, the first one shown when the workbook opens.
TABS = (("keys", "Keys and findings"), ("long-lived", "Every long-lived credential"), ("usage", "Where keys are used"),
        ("changes", "What changed"))

# The findings-by-account bar chart: one series per finding of the catalogue, in its order.
FINDING_SERIES = [finding.column for finding in FINDINGS]


def query_text(name: str) -> str:
    return (QUERIES / f"{name}.kql").read_text(encoding="utf-8")


def lookback_ms(text: str) -> int:
    """The item's time range: the query's own `let lookback = <n>d;`, else 7 days."""
    m = re.search(r"^let lookback = (\d+)d;", text, re.M)
    days = int(m[1]) if m else DEFAULT_LOOKBACK_DAYS
    return days * 24 * 3600 * 1000


def _id(name: str) -> str:
    """A stable id (workbooks want GUIDs for parameters), derived from the name so that builds are reproducible."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"aws-iam-keys-workbook/{name}"))


def text_item(name: str, markdown: str) -> dict[str, Any]:
    return {"type": 1, "content": {"json": markdown}, "name": name}


def query_item(
    name: str,
    title: str,
    visualization: str,
    *,
    account_filter: bool = False,
    width: int | None = None,
    extra: dict[str, Any] | None = None,
    suffix: str = "",
) -> dict[str, Any]:
    """A query item of the file queries/<name>.kql; the item is named after the file (+ suffix: names are unique)."""
    text = query_text(name)
    query = text.rstrip("\n") + ("\n" + ACCOUNT_FILTER if account_filter else "")
    content: dict[str, Any] = {
        "version": "KqlItem/1.0",
        "query": query,
        "size": 0,
        "title": title,
        "timeContext": {"durationMs": lookback_ms(text)},
        "queryType": 0,
        "resourceType": WORKSPACE_TYPE,
        "visualization": visualization,
        **(extra or {}),
    }
    item: dict[str, Any] = {"type": 3, "content": content, "name": name + suffix}
    if width is not None:
        item["customWidth"] = str(width)
    return item


def table_item(name: str, title: str, *, account_filter: bool = True, width: int | None = None) -> dict[str, Any]:
    return query_item(
        name, title, "table", account_filter=account_filter, width=width,
        extra={"gridSettings": {"filter": True}, "noDataMessage": "None: nothing to do here."},
    )


def group_item(name: str, title: str, items: list[dict[str, Any]], *, expanded: bool = True) -> dict[str, Any]:
    return {
        "type": 12,
        "content": {
            "version": "NotebookGroup/1.0",
            "groupType": "editable",
            "title": title,
            "expandable": True,
            "expanded": expanded,
            "items": items,
        },
        "name": name,
    }


def tabs_item() -> dict[str, Any]:
    """The tab strip: each link sets the selectedTab parameter; the groups below show for their value."""
    return {
        "type": 11,
        "content": {
            "version": "LinkItem/1.0",
            "style": "tabs",
            "links": [
                {"id": _id(f"tab/{value}"), "cellValue": TAB_PARAMETER, "linkTarget": "parameter",
                 "linkLabel": label, "subTarget": value, "style": "link"}
                for value, label in TABS
            ],
        },
        "name": "tabs",
    }


def tab_group(tab: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A tab's content: a plain group shown only while its tab is selected."""
    if tab not in dict(TABS):
        raise ValueError(f"no tab {tab!r} in TABS")
    return {
        "type": 12,
        "content": {"version": "NotebookGroup/1.0", "groupType": "editable", "items": items},
        "conditionalVisibility": {"parameterName": TAB_PARAMETER, "comparison": "isEqualTo", "value": tab},
        "name": f"tab-{tab}",
    }


def parameters_item() -> dict[str, Any]:
    text = query_text("accounts")
    return {
        "type": 9,
        "content": {
            "version": "KqlParameterItem/1.0",
            "parameters": [
                {
                    "id": _id("Account"),
                    "version": "KqlParameterItem/1.0",
                    "name": "Account",
                    "label": "Accounts (drill-down tables)",
                    "type": 2,
                    "isRequired": True,
                    "multiSelect": True,
                    "quote": "'",
                    "delimiter": ",",
                    "query": text,
                    "typeSettings": {"additionalResourceOptions": ["value::all"], "selectAllValue": "*",
                                     "showDefault": False},
                    "defaultValue": "value::all",
                    "timeContext": {"durationMs": lookback_ms(text)},
                    "queryType": 0,
                    "resourceType": WORKSPACE_TYPE,
                }
            ],
            "style": "pills",
            "queryType": 0,
            "resourceType": WORKSPACE_TYPE,
        },
        "name": "accounts",
    }


INTRO = """# AWS IAM access keys

Every access key of the AWS organization, as the collector last saw it (tables `AwsIamAccessKeys_CL` and
`AwsIamKeyCollectorRuns_CL`). The findings come from the newest successful or partially successful run; an account
that failed in that run shows its keys from its own newest earlier run, marked **Stale**. The queries are the files in
the repository's `queries/` folder. The tabs: the keys and their findings, where each key is used from (CloudTrail),
and what changed between runs."""

USAGE_INTRO = """### Where each key is used from

The calls `AWSCloudTrail` logged for each key of the latest snapshot, joined on `AccessKeyFingerprint` (the first 16
hex characters of SHA-256 of `UserIdentityAccessKeyId`): source IPs, countries, networks, user agents, services,
regions, error rate, first and last call. `AWSCloudTrail` is written by Microsoft Sentinel's **Amazon Web Services**
connector; without it the first row says so. Root keys show no calls (their ids are not in the inventory).

**When the data cannot be trusted:** "no calls" means "unused" only for an account the coverage table shows as
*sending*; for an account *never* or *stale* there, it means "no data". On the Basic or Auxiliary plan (or lake-only)
`AWSCloudTrail` feeds no alert rule: docs/insight.md, "CloudTrail coverage", says how to check the plan."""

CREATORS_INTRO = """### Who created each key

`AWSCloudTrail`'s `CreateAccessKey` events joined to the keys on `AccessKeyFingerprint` (of the new key id in the
event's response): the creator's ARN, source IP, user agent and time. **CreatedForAnotherUser** marks a key created
by someone other than its user (another user, an assumed role, root): a privilege-escalation and persistence step,
also an alert. Root keys cannot be joined (IAM shows no root key id); keys created before the lookback or before
CloudTrail reached the workspace have no row."""

CHANGES_INTRO = """### What changed between runs

Key lifecycle events between consecutive good snapshots of each account (a run an account failed in is no snapshot of
it): Created, Deactivated, Reactivated, Deleted, Rotated (a user's key replaced by a newer one), RootKeyAppeared,
RootKeyRemoved. The time is the run that saw the change."""


LONG_LIVED_INTRO = """### Every long-lived credential

Access keys and the other long-lived credentials of IAM users (`AwsIamCredentials_CL`): long-term API keys for Amazon
Bedrock and CloudWatch Logs, CodeCommit Git and Amazon Keyspaces credentials, X.509 signing certificates. The one view
is the workspace function `AwsIamLongLivedCredentials()` (queries/long-lived-credentials.kql): call it from any query.
A kind of credential an account could not be read for in the newest run (`CredentialsUnknownAccounts` in the run
record: unknown, not none) shows its rows from an earlier run, marked **Stale**."""


def long_lived_tab() -> dict[str, Any]:
    tiles = query_item(
        "credentials-summary", "Findings of the other long-lived credentials", "tiles",
        extra={
            "tileSettings": {
                "titleContent": {"columnMatch": "Finding", "formatter": 1},
                "leftContent": {"columnMatch": "Count", "formatter": 12, "formatOptions": {"palette": "auto"}},
                "showBorder": True,
            }
        },
    )
    return tab_group("long-lived", [
        text_item("long-lived-intro", LONG_LIVED_INTRO),
        tiles,
        table_item("long-lived-by-type", "Every long-lived credential by kind", account_filter=False),
        table_item("credential-findings", "Credentials other than keys with findings"),
        table_item("credential-changes", "Changes of the other credentials (30 days)"),
        group_item("all-long-lived", "Every long-lived credential (latest snapshot)", [
            table_item("long-lived-credentials", "AwsIamLongLivedCredentials()"),
        ], expanded=False),
    ])


def build_workbook() -> dict[str, Any]:
    tiles = query_item(
        "findings-summary", "Findings", "tiles",
        extra={
            "tileSettings": {
                "titleContent": {"columnMatch": "Finding", "formatter": 1},
                "leftContent": {"columnMatch": "Count", "formatter": 12, "formatOptions": {"palette": "auto"}},
                "showBorder": True,
            }
        },
    )
    trend = query_item(
        "key-creation-trend", "Keys created per day (last 365 days)", "timechart",
        extra={"chartSettings": {"xAxis": "CreatedAt", "yAxis": ["KeysCreated"]}},
    )
    by_account_chart = query_item(
        "findings-by-account", "Findings by account", "barchart", width=50, suffix=CHART_SUFFIX,
        extra={"chartSettings": {"xAxis": "Account", "yAxis": FINDING_SERIES, "showLegend": True}},
    )
    health = group_item("collector-health", "Collector health", [
        query_item("collector-last-run", "Last run", "table", width=100),
        query_item("collector-runs-by-status", "Runs by status (7 days)", "piechart", width=30),
        table_item("failing-accounts", "Accounts failing (7 days)", width=70),
        query_item("collector-runs", "Runs (7 days)", "table", extra={"gridSettings": {"filter": True}}),
    ])
    usage = tab_group("usage", [
        text_item("usage-intro", USAGE_INTRO),
        table_item("cloudtrail-coverage", "CloudTrail coverage: last AWSCloudTrail event per AWS account",
                   account_filter=False),
        table_item("key-usage", "Where each key is used from (AWSCloudTrail, 7 days)"),
        table_item("key-usage-sources", "Keys by source IP (7 days)"),
        text_item("creators-intro", CREATORS_INTRO),
        table_item("key-creators", "Who created each key (AWSCloudTrail CreateAccessKey, 90 days)"),
    ])
    changes = tab_group("changes", [
        text_item("changes-intro", CHANGES_INTRO),
        query_item("key-changes-per-day", "Key changes per day (30 days)", "timechart",
                   extra={"chartSettings": {"xAxis": "TimeGenerated", "yAxis": ["Events"], "group": "EventType",
                                            "showLegend": True}}),
        table_item("key-changes", "Key changes (30 days)"),
    ])
    return {
        "version": "Notebook/1.0",
        "items": [
            text_item("intro", INTRO),
            parameters_item(),
            tabs_item(),
            tab_group("keys", [
                tiles,
                table_item("kill-first", "Kill first: active keys by RiskScore (the formula: README, kill-first)"),
                trend,
                by_account_chart,
                table_item("findings-by-account", "Keys and findings per account", width=50),
                table_item("findings-by-owner", "Findings by owner (tell each owner what to fix)",
                           account_filter=False),
                table_item("owner-digest", "Owner digests: what each owner's digest lists today (due in 15, 7 or 1 "
                           "day(s), or overdue; no owner: the fallback address)", account_filter=False),
                group_item("drill-down", "Findings", [
                    table_item("root-keys", f"Root-account access keys ({ROOT_KEY.benchmark})"),
                    table_item("quarantined-keys", "Keys of users AWS quarantined (a key of theirs seen in public)"),
                    table_item("rotation-due", "Keys due for rotation"),
                    table_item("unused-keys", "Unused and never-used active keys"),
                    table_item("two-active-keys", "Users with two active keys"),
                    table_item("unowned-keys", "Active keys without an owner"),
                ]),
                group_item("exceptions", "Accepted risk (exceptions file)", [
                    table_item("excepted-keys", "Excepted keys: left out of every count", width=60),
                    table_item("expired-exceptions", "Expired exceptions: their keys count again", width=40),
                ]),
                group_item("all-keys", "All keys (latest snapshot)", [
                    table_item("latest-snapshot", "Latest snapshot per key"),
                ], expanded=False),
                health,
            ]),
            long_lived_tab(),
            usage,
            changes,
        ],
        "fallbackResourceIds": [WORKSPACE_PLACEHOLDER],
        "$schema": "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
    }


def render() -> str:
    return json.dumps(build_workbook(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed workbook is not up to date")
    args = parser.parse_args(argv)
    generated = render()
    if args.check:
        current = WORKBOOK.read_text(encoding="utf-8") if WORKBOOK.exists() else ""
        if current != generated:
            print(f"{WORKBOOK.relative_to(ROOT)} is out of date: run python scripts/build_workbook.py", file=sys.stderr)
            return 1
        return 0
    WORKBOOK.parent.mkdir(parents=True, exist_ok=True)
    WORKBOOK.write_text(generated, encoding="utf-8")
    print(f"wrote {WORKBOOK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
