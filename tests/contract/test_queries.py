"""The KQL library (queries/*.kql), the workbook built from it and the alert rules that load it.

Every query may reference only columns of the tables it reads, as shared/records.py defines them (the single source
of truth), plus names it defines itself (let, extend/project/summarize aliases) and KQL's own words. A small tokenizer
finds the identifiers; a misspelled column is reported, which the mutation tests below prove for every column every
query uses. The workbook JSON must be the one scripts/build_workbook.py generates from these files, and the alert rules
must load their queries from these files.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from functools import cache
from itertools import product
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.domain import GOOD_RUN_STATUSES
from shared.findings.catalogue import CREDENTIAL_FINDINGS, FINDINGS, Finding, counts, is_excepted
from shared.records import CREDENTIALS_TABLE, KEYS_TABLE, RUNS_TABLE, CredentialRecord, KeyRecord, RunRecord, columns
from tests.support.bicep import walk as walk_tree

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "queries"
QUERY_FILES = sorted(QUERIES.glob("*.kql"))
INFRA = ROOT / "infra"
SNAPSHOT_BEGIN = "// --- latest snapshot:"
SNAPSHOT_END = "// --- end of latest snapshot ---"
CREDENTIALS_BEGIN = "// --- latest credentials:"
CREDENTIALS_END = "// --- end of latest credentials ---"

# AWSCloudTrail (written by Microsoft Sentinel's Amazon Web Services connector): its published columns, a copy of
# ../shared/schemas/AWSCloudTrail.json kept in the repository so that a clone alone passes.
CLOUDTRAIL_SCHEMA = ROOT / "tests" / "data" / "schemas" / "AWSCloudTrail.json"
CLOUDTRAIL_TABLE = "AWSCloudTrail"

TABLE_COLUMNS = {
    KEYS_TABLE.table: {name for name, _ in columns(KeyRecord)},
    RUNS_TABLE.table: {name for name, _ in columns(RunRecord)},
    CREDENTIALS_TABLE.table: {name for name, _ in columns(CredentialRecord)},
    CLOUDTRAIL_TABLE: {name for name, _ in json.loads(CLOUDTRAIL_SCHEMA.read_text(encoding="utf-8"))["columns"]},
}

# KQL words the queries use: operators, their parameters, functions, literals. Anything else must be a column or a
# name the query defines.
KQL_WORDS = {
    # tabular operators and their words
    "let", "where", "project", "extend", "summarize", "by", "top", "order", "sort", "asc", "desc", "nulls", "first",
    "last", "mv", "expand", "make", "series", "on", "from", "to", "step", "default", "union", "join", "kind",
    "leftsemi", "leftanti", "inner", "innerunique", "leftouter", "distinct", "count", "take", "limit", "away",
    "rename", "render", "timechart", "barchart", "piechart", "table", "with",
    # logical and comparison words
    "and", "or", "not", "in", "has", "contains", "between", "true", "false",
    # scalar and aggregation functions
    "ago", "now", "startofday", "bin", "iff", "case", "isempty", "isnotempty", "isnull", "isnotnull", "strcat",
    "strcat_array", "tostring", "toint", "todynamic", "parse_json", "toscalar", "round", "max", "min", "sum",
    "countif", "dcount", "dcountif", "arg_max", "arg_min", "make_list", "make_set", "array_length", "datetime",
    "dynamic", "bag_pack", "pack_array", "format_timespan", "datetime_diff",
    # the usage join and the change events
    "isfuzzy", "datatable", "print", "string", "timespan", "bool", "long", "real", "serialize", "prev",
    "ingestion_time", "hash_sha256", "substring", "strlen", "geo_info_from_ip_address", "parse_ipv4", "parse_ipv6",
    "format_ipv4_mask", "format_datetime", "coalesce", "startswith", "take_any", "take_anyif", "make_set_if",
    "fullouter", "null", "$left", "$right", "column_ifexists",
}

TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*)
      | (?P<string>@?"(?:\\.|[^"\\\n])*"|@?'(?:\\.|[^'\\\n])*')
      | (?P<number>\d+(?:\.\d+)?[A-Za-z]*)
      | (?P<word>\$?[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|=~|!=|<=|>=|!in\b|[=.()\[\]{},;|<>+\-*/!:])
      | (?P<space>\s+)
    """,
    re.X,
)


def tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, offset) of every token that matters: comments and strings dropped, whitespace skipped."""
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, f"cannot tokenize at {text[pos:pos + 30]!r}"
        kind = m.lastgroup or ""
        if kind not in ("comment", "space", "string"):
            out.append((kind, m[0], pos))
        pos = m.end()
    return out


def identifiers(text: str) -> tuple[list[tuple[str, int]], set[str]]:
    """(used identifiers with their offsets, defined names). A word right after '.' is a dynamic member, not a
    column; a word right before a single '=' is defined (let x =, extend X =, Alias = count(), ...)."""
    toks = tokens(text)
    used, defined = [], set()
    for i, (kind, word, offset) in enumerate(toks):
        if kind != "word":
            continue
        if i and toks[i - 1][1] == ".":
            continue
        if i + 1 < len(toks) and toks[i + 1][1] == "=":
            defined.add(word)
            continue
        used.append((word, offset))
    # the parameters of a let-bound function: let KeyChanges = (window: timespan) { ... }
    defined |= set(FUNCTION_PARAMETERS.findall(text))
    return used, defined


FUNCTION_PARAMETERS = re.compile(r"^let \w+ = \((\w+):", re.M)


def tables_read(text: str) -> set[str]:
    return {word for kind, word, _ in tokens(text) if kind == "word" and word in TABLE_COLUMNS}


def unknown_identifiers(text: str) -> list[str]:
    """Identifiers of a query that are neither a column of a table it reads, nor defined by it, nor KQL."""
    used, defined = identifiers(text)
    tables = tables_read(text)
    known = KQL_WORDS | defined | tables | set().union(*(TABLE_COLUMNS[t] for t in tables))
    return sorted({word for word, _ in used if word.lower() not in KQL_WORDS and word not in known})


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# The library


QUESTIONS = {
    "latest-snapshot", "rotation-due", "unused-keys", "two-active-keys", "key-creation-trend", "findings-by-account",
    "findings-summary", "root-keys", "collector-runs-by-status", "collector-last-run", "collector-runs",
    "failing-accounts", "accounts", "alert-root-key", "alert-rotation-due-new", "alert-collector-silent",
    "alert-run-failed",
    # where each key is used from, and what changed since the last run
    "key-usage", "key-usage-sources", "alert-key-new-source", "alert-key-usage-mismatch", "key-changes",
    "key-changes-per-day", "alert-new-key",
    # who created each key (AWSCloudTrail CreateAccessKey)
    "key-creators", "alert-key-created-for-another-user",
    # which accounts send CloudTrail
    "cloudtrail-coverage",
    # owners and exceptions
    "unowned-keys", "findings-by-owner", "excepted-keys", "expired-exceptions",
    # blast radius: the kill-first ranking, keys of users AWS quarantined
    "kill-first", "quarantined-keys", "alert-key-quarantined",
    # what each owner's digest lists today (the owner-digest function)
    "owner-digest",
    # every long-lived credential: the one view (the workspace function), the other credentials' findings and changes
    "long-lived-credentials", "long-lived-by-type", "credentials-summary", "credential-findings", "credential-changes",
    "alert-api-key-no-expiry-new",
}


def test_one_file_per_question() -> None:
    assert {p.stem for p in QUERY_FILES} == QUESTIONS


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_every_query_says_what_it_answers(path: Path) -> None:
    header = []
    for line in read(path).splitlines():
        if not line.startswith("//"):
            break
        header.append(line[2:].strip())
    assert len(" ".join(header)) >= 40, f"{path.name}: start with a comment saying what the query answers"


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_every_query_references_only_existing_columns(path: Path) -> None:
    text = read(path)
    assert tables_read(text), f"{path.name} reads neither table"
    assert unknown_identifiers(text) == [], f"{path.name}: unknown columns or names"


def test_a_misspelled_column_fails_the_check() -> None:
    text = read(QUERIES / "rotation-due.kql").replace("| order by AgeDays desc", "| order by AgeDay desc")
    assert unknown_identifiers(text) == ["AgeDay"]
    # a column of the other table is no column of this one
    text = "AwsIamKeyCollectorRuns_CL\n| project UserName"
    assert unknown_identifiers(text) == ["UserName"]
    # names in strings and comments are not columns; dynamic members are not either
    assert unknown_identifiers('AwsIamKeyCollectorRuns_CL // NoSuchColumn\n| where Status == "NoSuch"') == []
    assert unknown_identifiers("AwsIamKeyCollectorRuns_CL | extend X = todynamic(FailedAccounts).Whatever") == []


@pytest.mark.parametrize("path", QUERY_FILES, ids=lambda p: p.stem)
def test_misspelling_any_column_a_query_uses_is_caught(path: Path) -> None:
    text = read(path)
    used, _ = identifiers(text)
    all_columns = set().union(*TABLE_COLUMNS.values())
    first_use: dict[str, int] = {}
    for word, offset in used:
        if word in all_columns:
            first_use.setdefault(word, offset)
    assert first_use, f"{path.name} uses no column"
    for word, offset in first_use.items():
        mutated = text[:offset] + word + "Typo" + text[offset + len(word):]
        assert f"{word}Typo" in unknown_identifiers(mutated), f"{path.name}: a misspelled {word} would pass"


def snapshot_block(text: str) -> str:
    start = text.index(SNAPSHOT_BEGIN)
    end = text.index(SNAPSHOT_END) + len(SNAPSHOT_END)
    return text[start:end]


def test_every_query_on_the_snapshot_uses_the_same_snapshot() -> None:
    reference = snapshot_block(read(QUERIES / "latest-snapshot.kql"))
    users = [p for p in QUERY_FILES if "LatestKeys" in read(p)]
    assert {p.stem for p in users} >= {"rotation-due", "unused-keys", "two-active-keys", "key-creation-trend",
                                       "findings-by-account", "findings-summary", "root-keys"}
    for path in users:
        assert snapshot_block(read(path)) == reference, f"{path.name}: copy the block from latest-snapshot.kql"


def test_snapshot_takes_good_runs_and_falls_back_per_failed_account() -> None:
    block = snapshot_block(read(QUERIES / "latest-snapshot.kql"))
    assert 'Status in ("Succeeded", "PartiallySucceeded")' in block
    # the Python readers' good runs (shared/insight/snapshot.py, changes.py, report.py) are the same statuses
    assert f"Status in ({', '.join(json.dumps(s) for s in GOOD_RUN_STATUSES)})" in block
    assert "FailedAccounts" in block and "Stale = true" in block and "Stale = false" in block


def test_a_row_delivered_twice_counts_once() -> None:
    """Delivery is at least once (a sink retries after an ambiguous failure): key rows count once per run and key,
    run records once per run, as shared/insight/report.py's once() does."""
    block = snapshot_block(read(QUERIES / "latest-snapshot.kql"))
    assert "| summarize arg_max(TimeGenerated, *) by RunId, AccessKeyFingerprint;" in block
    for name in ("collector-runs", "collector-runs-by-status", "failing-accounts"):
        assert "| summarize arg_max(TimeGenerated, *) by RunId" in read(QUERIES / f"{name}.kql"), name


def test_the_trend_is_a_make_series_per_day_of_creation() -> None:
    text = read(QUERIES / "key-creation-trend.kql")
    assert re.search(r"make-series \w+ = count\(\) default = 0 on CreatedAt .*\n?\s*step 1d", text)


def test_kill_first_orders_as_the_catalogue_and_lists_as_many() -> None:
    from shared.findings.catalogue import KILL_FIRST_ROWS, kill_first_order

    text = read(QUERIES / "kill-first.kql")
    assert ("| order by RiskScore desc, AgeDays desc, AccountId asc, UserName asc, AccessKeyFingerprint asc\n"
            f"| take {KILL_FIRST_ROWS}\n") in text
    assert "| where RiskScore > 0" in text
    # the Python sort key names the same columns, in the same order and directions
    row = {"RiskScore": 5, "AgeDays": 7, "AccountId": "a", "UserName": "u", "AccessKeyFingerprint": "f"}
    assert kill_first_order(row) == (-5, -7, "a", "u", "f")


def test_root_keys_query_marks_the_unknown() -> None:
    text = read(QUERIES / "root-keys.kql")
    assert "where IsRootKey" in text and "RootKeysUnknownAccounts" in text


# --------------------------------------------------------------------------------------------------------------------
# The workbook: generated from the files


@cache
def build_workbook_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_workbook", ROOT / "scripts" / "build_workbook.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_workbook"] = module
    spec.loader.exec_module(module)
    return module


def workbook_items(node: Any) -> list[dict[str, Any]]:
    found = []
    for item in node.get("items", []):
        found.append(item)
        if item["type"] == 12:
            found += workbook_items(item["content"])
    return found


def committed_workbook() -> dict[str, Any]:
    return json.loads(read(build_workbook_module().WORKBOOK))


def test_committed_workbook_is_the_generated_one() -> None:
    builder = build_workbook_module()
    assert read(builder.WORKBOOK) == builder.render(), "run: python scripts/build_workbook.py"
    assert builder.main(["--check"]) == 0


def test_every_workbook_query_is_a_query_file_and_every_question_is_in_the_workbook() -> None:
    builder = build_workbook_module()
    files = {p.stem: read(p).rstrip("\n") for p in QUERY_FILES}
    used = set()
    names = [item["name"] for item in workbook_items(committed_workbook())]
    assert len(names) == len(set(names)), "workbook item names are unique"
    for item in workbook_items(committed_workbook()):
        if item["type"] == 3:
            query = item["content"]["query"]
            name = item["name"].removesuffix(builder.CHART_SUFFIX)
            assert name in files, item["name"]
            assert query in (files[name], files[name] + "\n" + builder.ACCOUNT_FILTER)
            used.add(name)
        if item["type"] == 9:
            for parameter in item["content"]["parameters"]:
                assert parameter["query"].rstrip("\n") in files.values()
                used.add(next(n for n, t in files.items() if t == parameter["query"].rstrip("\n")))
    assert used == {name for name in files if not name.startswith("alert-")}


def test_workbook_has_tiles_a_line_chart_a_bar_chart_and_drill_down_tables() -> None:
    items = {i["name"]: i["content"] for i in workbook_items(committed_workbook()) if i["type"] == 3}
    visual = {name: c["visualization"] for name, c in items.items()}
    assert visual["findings-summary"] == "tiles"
    assert visual["key-creation-trend"] == "timechart"
    assert visual["findings-by-account-chart"] == "barchart"
    assert visual["findings-by-account"] == "table"
    for name in ("root-keys", "rotation-due", "unused-keys", "two-active-keys", "failing-accounts", "collector-runs"):
        assert visual[name] == "table", name
    tables = [c for c in workbook_items(committed_workbook()) if c["type"] == 3 and c["content"]["visualization"]
              == "table"]
    assert len(tables) >= 8
    # the bar chart's series are columns the query projects
    chart = items["findings-by-account-chart"]["chartSettings"]
    project = read(QUERIES / "findings-by-account.kql").split("| project", 1)[1]
    for column in [chart["xAxis"], *chart["yAxis"]]:
        assert re.search(rf"\b{column}\b", project), column
    tiles = items["findings-summary"]["tileSettings"]
    assert tiles["titleContent"]["columnMatch"] == "Finding" and tiles["leftContent"]["columnMatch"] == "Count"
    assert "project Finding, Count" in read(QUERIES / "findings-summary.kql")


def test_workbook_items_query_the_workspace_over_their_lookback() -> None:
    for item in workbook_items(committed_workbook()):
        if item["type"] == 3:
            content = item["content"]
            assert content["resourceType"] == "microsoft.operationalinsights/workspaces"
            days = re.search(r"^let lookback = (\d+)d;", content["query"], re.M)
            expected = int(days[1]) if days else 7
            assert content["timeContext"]["durationMs"] == expected * 86_400_000, item["name"]


# --------------------------------------------------------------------------------------------------------------------
# Bicep: the workbook and the alerts deployed from the same files


pycep = pytest.importorskip("pycep")


@cache
def bicep(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(text=read(path))


def loaded_files(node: Any) -> list[str]:
    return [n["function"]["parameters"]["file_path"] for _, n in walk_tree(node)
            if isinstance(n, dict) and isinstance(n.get("function"), dict)
            and n["function"].get("type") == "load_text_content"]


def module_call(path: str) -> dict[str, Any]:
    (found,) = [m for m in bicep(INFRA / "main.bicep")["modules"].values() if m["detail"]["path"] == path]
    return found["config"]


def test_workbook_bicep_deploys_the_committed_json_on_the_workspace() -> None:
    path = INFRA / "modules" / "workbook.bicep"
    parsed = bicep(path)
    (workbook,) = parsed["resources"].values()
    assert workbook["type"] == "Microsoft.Insights/workbooks"
    config = workbook["config"]
    assert config["kind"] == "shared"
    assert config["name"]["function"]["type"] == "guid"
    assert config["properties"]["sourceId"] == {  # lower-cased, as the gallery matches it
        "function": {"type": "to_lower", "parameters": {"string_to_change": "workspaceResourceId"}}
    }
    assert config["properties"]["serializedData"] == "serializedData"
    serialized = parsed["variables"]["serializedData"]["value"]["function"]
    assert serialized["type"] == "replace"
    (loaded,) = loaded_files(serialized)
    assert (path.parent / loaded).resolve() == build_workbook_module().WORKBOOK
    placeholder = build_workbook_module().WORKSPACE_PLACEHOLDER
    assert serialized["parameters"]["old_string"] == placeholder
    assert serialized["parameters"]["new_string"] == "workspaceResourceId"
    assert committed_workbook()["fallbackResourceIds"] == [placeholder]
    assert len(read(build_workbook_module().WORKBOOK)) < 131_072, "loadTextContent reads at most 131,072 characters"
    assert module_call("modules/workbook.bicep")["params"]["workspaceResourceId"] == "workspaceResourceId"


def alert_rules() -> dict[str, dict[str, Any]]:
    resources = bicep(INFRA / "modules" / "alerts.bicep")["resources"]
    return {name: r["config"] for name, r in resources.items() if r["type"] == "Microsoft.Insights/scheduledQueryRules"}


def test_alert_rules_load_their_queries_from_the_query_files() -> None:
    path = INFRA / "modules" / "alerts.bicep"
    rules = alert_rules()
    assert set(rules) == {"rootKey", "rotationDue", "collectorSilent", "runFailed", "newKey", "apiKeyNoExpiry",
                          "newSource", "usageMismatch", "keyForAnotherUser", "quarantined"}
    loaded = {}
    for name, config in rules.items():
        (criterion,) = config["properties"]["criteria"]["allOf"]
        (file_path,) = loaded_files(criterion["query"])
        target = (path.parent / file_path).resolve()
        assert target.parent == QUERIES and target.is_file(), file_path
        loaded[name] = target.stem
        assert config["properties"]["scopes"] == ["workspaceResourceId"]
        assert config["properties"]["actions"]["actionGroups"] == "actionGroups"
        assert config["properties"]["autoMitigate"] is True
    assert loaded == {"rootKey": "alert-root-key", "rotationDue": "alert-rotation-due-new",
                      "collectorSilent": "alert-collector-silent", "runFailed": "alert-run-failed",
                      "newKey": "alert-new-key", "apiKeyNoExpiry": "alert-api-key-no-expiry-new",
                      "newSource": "alert-key-new-source",
                      "usageMismatch": "alert-key-usage-mismatch",
                      "keyForAnotherUser": "alert-key-created-for-another-user",
                      "quarantined": "alert-key-quarantined"}
    assert {p.stem for p in QUERY_FILES if p.stem.startswith("alert-")} == set(loaded.values())


def test_root_key_alert_fires_per_account_on_any_root_key() -> None:
    rule = alert_rules()["rootKey"]["properties"]
    (criterion,) = rule["criteria"]["allOf"]
    assert rule["severity"] == 1  # as urgent as a silent collector: nothing can restrict the root user
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    assert [d["name"] for d in criterion["dimensions"]] == ["AccountId"]
    text = read(QUERIES / "alert-root-key.kql")
    assert "where IsRootKey" in text and 'Status == "Active"' not in text  # an inactive root key can be re-enabled


def test_silent_alert_window_is_twice_the_schedule() -> None:
    from tests.support.contract import CONTRACT_VALUES

    interval = int(re.fullmatch(r"0 0 \*/(\d+) \* \* \*", CONTRACT_VALUES["COLLECTOR_SCHEDULE"])[1])  # type: ignore[index]
    parameters = bicep(INFRA / "modules" / "alerts.bicep")["parameters"]
    main_parameters = bicep(INFRA / "main.bicep")["parameters"]
    assert parameters["collectorSilentAfterHours"]["default"] == 2 * interval
    assert main_parameters["collectorSilentAfterHours"]["default"] == 2 * interval
    assert main_parameters["runFailedWindowHours"]["default"] == interval
    silent = alert_rules()["collectorSilent"]["properties"]
    # The query returns one row when the newest run record it sees is older than the lookback (the parameter, in its
    # `let lookback` line: test_service_rules), and none before the first run record: so the rule looks at the longest
    # window a log search alert takes, which must be longer than every lookback allowed, and fires on a row.
    assert silent["windowSize"] == "P2D"
    for module in (INFRA / "modules" / "alerts.bicep", INFRA / "main.bicep"):
        (allowed,) = [d["argument"] for d in bicep(module)["parameters"]["collectorSilentAfterHours"]["decorators"]
                      if d["type"] == "allowed"]
        assert max(allowed) < 48, module.name
    (criterion,) = silent["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    assert silent["severity"] == 1
    failed = alert_rules()["runFailed"]["properties"]
    assert "runFailedWindowHours" in str(failed["windowSize"])
    (criterion,) = failed["criteria"]["allOf"]
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)


def test_action_group_is_an_existing_one_and_or_a_new_email_one() -> None:
    parsed = bicep(INFRA / "modules" / "alerts.bicep")
    assert parsed["parameters"]["actionGroupId"]["default"] == ""
    assert parsed["parameters"]["alertEmailAddress"]["default"] == ""
    group = parsed["resources"]["emailActionGroup"]
    assert group["type"] == "Microsoft.Insights/actionGroups"
    assert group["config"]["condition"] == "createActionGroup"
    receivers = group["config"]["config"]["properties"]["emailReceivers"]
    assert receivers[0]["emailAddress"] == "alertEmailAddress"
    params = module_call("modules/alerts.bicep")["params"]
    assert params["actionGroupId"] == "alertActionGroupId"
    assert params["alertEmailAddress"] == "alertEmailAddress"
    assert params["workspaceResourceId"] == "workspaceResourceId"
    assert "customTables" in module_call("modules/alerts.bicep")["dependsOn"]


# --------------------------------------------------------------------------------------------------------------------
# The findings catalogue (shared/findings/catalogue.py) and the queries agree: each finding's KQL predicate selects
# exactly the rows its Python rule selects, and the queries that count or list a finding use a predicate that selects
# the same.

KQL_PREDICATE_TOKEN = re.compile(
    r'\s*(?:(?P<string>"[^"]*")|(?P<number>\d+)|(?P<word>[A-Za-z_]\w*)|(?P<op>==|!=|>=|<=|[<>()]))'
)


def kql_predicate(text: str, table: str = KEYS_TABLE.table) -> Any:
    """A KQL predicate of the simple form the findings use (columns of ``table``, string and number literals,
    comparisons, and/or/not, parentheses) as a Python function of a row; anything else raises ValueError."""
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = KQL_PREDICATE_TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"not a simple predicate at {text[pos:]!r}")
        kind, value = m.lastgroup, m[m.lastgroup or "op"]
        if kind == "word" and value in ("and", "or", "not"):
            out.append(f" {value} ")
        elif kind == "word" and value in ("true", "false"):
            out.append(value.title())
        elif kind == "word":
            if value not in TABLE_COLUMNS[table] and value not in ("Active", "Open"):
                raise ValueError(f"not a column: {value}")
            out.append(f"row[{value!r}]")
        else:
            out.append(value)
        pos = m.end()
    code = compile("".join(out).strip(), "<kql>", "eval")
    return lambda row: bool(eval(code, {"__builtins__": {}}, {"row": row}))  # noqa: S307 - our own tokens only


def contract_rows() -> list[dict[str, Any]]:
    """Every combination of the columns the findings read that the contract allows (RotationDue and Unused are set
    only on Active keys; Excepted is null in rows from before the column existed), with the ``Active`` and ``Open``
    aliases findings-by-account.kql extends."""
    rows = []
    for status, rotation, unused, never, root, count, owner, excepted, quarantined in product(
        ("Active", "Inactive"), (False, True), (False, True), (False, True), (False, True), (0, 1, 2, 3),
        ("", "team@example.com"), (False, True, None), (False, True, None),
    ):
        if status != "Active" and (rotation or unused):
            continue
        rows.append({"Status": status, "RotationDue": rotation, "Unused": unused, "NeverUsed": never,
                     "IsRootKey": root, "UserActiveKeyCount": count, "UserArn": "arn", "Owner": owner,
                     "Excepted": excepted, "Quarantined": quarantined, "Active": status == "Active",
                     "Open": excepted is not True})
    return rows


def selects_the_same(kql: str, rule: Any) -> bool:
    predicate = kql_predicate(kql)
    return all(predicate(row) == rule(row) for row in contract_rows())


def counted(finding: Finding) -> Any:
    """What the queries count and list for a finding: its rows that no exception accepts."""
    return lambda row: counts(finding, row)


def countif_arguments(text: str) -> dict[str, str]:
    """``Alias = countif(<predicate>)`` of a query: alias -> predicate (balanced parentheses)."""
    found = {}
    for m in re.finditer(r"(\w+) = countif\(", text):
        depth, pos = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[pos], 0)
            pos += 1
        found[m[1]] = " ".join(text[m.end():pos - 1].split())
    return found


def test_catalogue_names_and_columns_are_unique_and_fields_are_boolean_record_fields() -> None:
    assert len({f.name for f in FINDINGS}) == len({f.column for f in FINDINGS}) == len(FINDINGS)
    bools = {name for name, kind in columns(KeyRecord) if kind == "boolean"}
    assert all(f.record_field in bools for f in FINDINGS if f.record_field), "a finding sets a boolean KeyRecord field"
    assert all((f.record_field is None) == (f.sets is None) for f in FINDINGS)


@pytest.mark.parametrize("finding", FINDINGS, ids=lambda f: f.name)
def test_each_findings_kql_selects_what_its_rule_selects(finding: Finding) -> None:
    assert selects_the_same(finding.kql, finding.matches)


def test_the_kql_check_tells_a_different_predicate_apart() -> None:
    never_used = next(f for f in FINDINGS if f.name == "never_used")
    assert not selects_the_same("NeverUsed", never_used.matches)  # the contract's NeverUsed includes inactive keys
    two = next(f for f in FINDINGS if f.name == "two_active_keys")
    assert not selects_the_same('Status == "Active" and UserActiveKeyCount > 1', two.matches)  # root keys too


def test_findings_summary_counts_each_finding_by_its_rule_in_catalogue_order() -> None:
    text = read(QUERIES / "findings-summary.kql")
    countifs = countif_arguments(text)
    for finding in FINDINGS:
        if finding.distinct_by:  # counted as distinct users: where <predicate> | distinct <column> | count
            m = re.search(r"\| where (.+)\n\s*\| distinct (\w+)\n\s*\| count", text)
            assert m and m[2] == finding.distinct_by, finding.name
            assert selects_the_same(m[1], counted(finding)), finding.name
        else:
            alias = next(a for a, predicate in countifs.items() if selects_the_same(predicate, counted(finding)))
            assert alias == finding.column, finding.name
    labels = re.findall(r'Order = \d+, Finding = "([^"]+)"', text)
    assert labels == [f.label for f in FINDINGS] + ["Active keys"]


def test_findings_by_account_counts_each_finding_by_its_rule_and_sums_them() -> None:
    text = read(QUERIES / "findings-by-account.kql")
    countifs = countif_arguments(text)
    for finding in FINDINGS:
        assert finding.column in countifs, finding.name
        assert selects_the_same(countifs[finding.column], counted(finding)), finding.name
    assert selects_the_same(countifs["ExceptedKeys"], is_excepted)
    assert "Findings = " + " + ".join(f.column for f in FINDINGS) in " ".join(text.split())


@pytest.mark.parametrize("query", sorted({f.query for f in FINDINGS}))
def test_each_drill_down_query_lists_the_rows_of_its_findings(query: str) -> None:
    """One ``| where`` of the query selects exactly the rows of the findings that name it as their drill-down."""
    mine = [f for f in FINDINGS if f.query == query]
    text = read(QUERIES / f"{query}.kql").split(SNAPSHOT_END, 1)[-1]
    clauses = [" ".join(m.split()) for m in re.findall(r"\| where ([^|\n]+)", text)]
    simple = []
    for clause in clauses:
        try:
            simple.append(kql_predicate(clause))
        except ValueError:
            continue
    rows = contract_rows()
    assert any(all(p(r) == any(counts(f, r) for f in mine) for r in rows) for p in simple), (query, clauses)


# --------------------------------------------------------------------------------------------------------------------
# The other long-lived credentials (AwsIamCredentials_CL): their findings, their snapshot block, the one view


def credential_rows() -> list[dict[str, Any]]:
    """Every combination of the columns the credential findings read that the contract allows (the flags only on
    Active credentials; the privilege fields and Excepted null when not assessed or from before the column)."""
    rows = []
    for status, no_expiry, rotation, soon, privileged, quarantined, excepted in product(
        ("Active", "Inactive", "Expired"), (False, True), (False, True), (False, True), (None, False, True),
        (None, False, True), (False, True, None),
    ):
        if status != "Active" and (no_expiry or rotation or soon):
            continue
        rows.append({"Status": status, "NoExpiry": no_expiry, "RotationDue": rotation, "ExpiringSoon": soon,
                     "Privileged": privileged, "Quarantined": quarantined, "Excepted": excepted})
    return rows


def selects_the_same_credentials(kql: str, rule: Any) -> bool:
    predicate = kql_predicate(kql, CREDENTIALS_TABLE.table)
    return all(predicate(row) == rule(row) for row in credential_rows())


def test_credential_findings_are_unique_and_set_boolean_credential_fields() -> None:
    every = (*FINDINGS, *CREDENTIAL_FINDINGS)
    assert len({f.name for f in every}) == len({f.column for f in every}) == len(every)
    bools = {name for name, kind in columns(CredentialRecord) if kind == "boolean"}
    assert all(f.table == CREDENTIALS_TABLE.table for f in CREDENTIAL_FINDINGS)
    assert all(f.record_field in bools for f in CREDENTIAL_FINDINGS if f.record_field)
    assert all((f.record_field is None) == (f.sets is None) for f in CREDENTIAL_FINDINGS)


@pytest.mark.parametrize("finding", CREDENTIAL_FINDINGS, ids=lambda f: f.name)
def test_each_credential_findings_kql_selects_what_its_rule_selects(finding: Finding) -> None:
    assert selects_the_same_credentials(finding.kql, finding.matches)


def test_the_credential_check_tells_a_different_predicate_apart() -> None:
    privileged = next(f for f in CREDENTIAL_FINDINGS if f.name == "privileged_user_credential")
    assert not selects_the_same_credentials("Privileged == true or Quarantined == true", privileged.matches)  # inactive
    no_expiry = next(f for f in CREDENTIAL_FINDINGS if f.name == "api_key_no_expiry")
    assert not selects_the_same_credentials("NoExpiry or RotationDue", no_expiry.matches)


def test_credentials_summary_counts_each_credential_finding_by_its_rule_in_catalogue_order() -> None:
    text = read(QUERIES / "credentials-summary.kql")
    countifs = countif_arguments(text)
    for finding in CREDENTIAL_FINDINGS:
        predicate = countifs[finding.column]
        assert selects_the_same_credentials(predicate, lambda row, f=finding: counts(f, row)), finding.name
    labels = re.findall(r'Order = \d+, Finding = "([^"]+)"', text)
    assert labels == [f.label for f in CREDENTIAL_FINDINGS] + ["Active credentials other than keys"]


def test_the_credential_drill_down_lists_the_rows_of_every_credential_finding() -> None:
    (query,) = {f.query for f in CREDENTIAL_FINDINGS}
    text = read(QUERIES / f"{query}.kql").split(CREDENTIALS_END, 1)[-1]
    (clause,) = re.findall(r"\| where ((?:[^|]|\n)+?)\n\|", text)
    predicate = kql_predicate(" ".join(clause.split()), CREDENTIALS_TABLE.table)
    assert all(predicate(r) == any(counts(f, r) for f in CREDENTIAL_FINDINGS) for r in credential_rows())


def credentials_block(text: str) -> str:
    return text[text.index(CREDENTIALS_BEGIN):text.index(CREDENTIALS_END) + len(CREDENTIALS_END)]


def test_every_query_on_the_credentials_uses_the_same_blocks() -> None:
    reference = read(QUERIES / "long-lived-credentials.kql")
    users = [p for p in QUERY_FILES if CREDENTIALS_BEGIN in read(p)]
    assert {p.stem for p in users} == {"long-lived-credentials", "long-lived-by-type", "credentials-summary",
                                       "credential-findings"}
    for path in users:
        assert credentials_block(read(path)) == credentials_block(reference), path.name
        assert snapshot_block(read(path)) == snapshot_block(read(QUERIES / "latest-snapshot.kql")), path.name
    block = credentials_block(reference)
    assert "CredentialsUnknownAccounts" in block and "failedNow" in block and "Stale = true" in block
    assert "| summarize arg_max(TimeGenerated, *) by RunId, CredentialFingerprint;" in block


def test_the_one_view_is_deployed_as_a_workspace_function_from_its_file() -> None:
    resources = bicep(INFRA / "modules" / "custom-tables.bicep")["resources"]
    (function,) = [r["config"] for r in resources.values()
                   if r["type"] == "Microsoft.OperationalInsights/workspaces/savedSearches"]
    properties = function["properties"]
    assert properties["functionAlias"] == "AwsIamLongLivedCredentials"
    (file_path,) = loaded_files(properties["query"])
    assert (INFRA / "modules" / file_path).resolve() == QUERIES / "long-lived-credentials.kql"
    text = read(QUERIES / "long-lived-credentials.kql")
    assert text.rstrip().splitlines()[-2] == "LongLived", "the function's body ends with the one view"
    assert len(text) < 131_072
