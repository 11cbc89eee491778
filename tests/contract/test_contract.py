"""The code against the project's contract (docs/contract.md): every setting's name and default, the Key Vault secrets
each combination of modes reads, every table, stream and file, and every record field with its type.

Each comparison is a function of its inputs (the contract's text, the settings' defaults, the names read, the record
types), so that each is also shown failing on the broken copy it exists to catch."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from shared import records
from shared.config.modes import AuthMode, SinkKind
from shared.config.settings import DEFAULTS, load_settings
from shared.errors import SettingsError
from shared.records import (
    CREDENTIALS_TABLE,
    KEYS_TABLE,
    RUNS_TABLE,
    CredentialRecord,
    KeyRecord,
    RunRecord,
    Table,
    columns,
)
from tests.support.contract import CONTRACT, Contract, Field, contract_text, parse
from tests.support.settings_env import WORKSPACE, minimal

# The contract's words for a column's type, as Log Analytics types (shared/records.py's columns()).
CONTRACT_TYPES = {"ISO 8601 UTC": "datetime", "string": "string", "int": "int", "bool": "boolean", "real": "real"}


# --------------------------------------------------------------------------------------------------------------------
# Settings


class RecordingEnv(dict[str, str]):
    """An environment that remembers every name the code asked it for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def mode_env(auth: str, sink: str) -> dict[str, str]:
    """Everything each combination of modes requires, so that load_settings reads a whole valid environment."""
    return minimal(AWS_AUTH_MODE=auth, LOG_SINK=sink, AWS_WEB_IDENTITY_AUDIENCE="api://collector",
                   LOG_ANALYTICS_WORKSPACE_ID=WORKSPACE)


def names_read_by_load_settings() -> set[str]:
    """Every setting name load_settings asks the environment for, over every combination of modes."""
    asked: set[str] = set()
    for auth in AuthMode:
        for sink in SinkKind:
            env = RecordingEnv(mode_env(auth.value, sink.value))
            try:
                load_settings(env)
            except SettingsError as error:  # the names read are what counts; a problem here is a test bug
                raise AssertionError(f"{auth} + {sink}: {error}") from error
            asked |= env.asked
    return asked


def setting_problems(contract: Contract, defaults: Mapping[str, str], read: Iterable[str]) -> list[str]:
    read = set(read)
    problems = []
    for name, setting in contract.settings.items():
        if setting.default is not None and defaults.get(name, setting.default) != setting.default:
            problems.append(f"{name}: the contract's default is {setting.default!r}, the code's {defaults[name]!r}")
        if setting.default is None and name in defaults:
            problems.append(f"{name}: the contract gives no default ({setting.default_cell}), the code "
                            f"{defaults[name]!r}")
        if setting.default is not None and not setting.pending and name not in defaults:
            problems.append(f"{name}: the contract's default is {setting.default!r}, the code has none")
        if not setting.pending and name not in read:
            problems.append(f"{name}: in the contract, but load_settings never reads it")
    for name in sorted(set(defaults) - set(contract.settings)):
        problems.append(f"{name}: the code has a default for it, the contract does not name it (docs/contract.md)")
    for name in sorted(read - set(contract.settings) - contract.foreign_settings):
        problems.append(f"{name}: load_settings reads it, the contract does not name it (docs/contract.md)")
    return problems


def test_the_settings_are_the_contracts() -> None:
    assert setting_problems(CONTRACT, DEFAULTS, names_read_by_load_settings()) == []


def test_a_default_that_differs_from_the_contract_is_found() -> None:
    broken = parse(replaced(contract_text(), "| `90` |", "| `91` |"))
    assert setting_problems(broken, DEFAULTS, names_read_by_load_settings()) == [
        "KEY_ROTATION_DAYS: the contract's default is '91', the code's '90'"]


def test_a_setting_the_code_adds_without_the_contract_is_found() -> None:
    read = names_read_by_load_settings()
    assert setting_problems(CONTRACT, {**DEFAULTS, "COLLECTOR_TURBO": "1"}, read) == [
        "COLLECTOR_TURBO: the code has a default for it, the contract does not name it (docs/contract.md)"]
    assert setting_problems(CONTRACT, DEFAULTS, read | {"COLLECTOR_TURBO"}) == [
        "COLLECTOR_TURBO: load_settings reads it, the contract does not name it (docs/contract.md)"]


def test_a_contract_setting_the_code_does_not_read_is_found() -> None:
    read = names_read_by_load_settings() - {"AWS_EXTERNAL_ID"}
    assert setting_problems(CONTRACT, DEFAULTS, read) == [
        "AWS_EXTERNAL_ID: in the contract, but load_settings never reads it"]
    without = {name: value for name, value in DEFAULTS.items() if name != "OUTBOX_CONTAINER"}
    assert setting_problems(CONTRACT, without, names_read_by_load_settings()) == [
        "OUTBOX_CONTAINER: the contract's default is 'collector-outbox', the code has none"]


def test_a_pending_setting_may_be_missing_but_not_differ() -> None:
    """The additions of 2026-12-04: absent from the code until implemented, then exactly as named."""
    read = names_read_by_load_settings()
    assert CONTRACT.settings["NOTIFY_MODE"].pending and DEFAULTS["NOTIFY_MODE"] == "dry_run"  # implemented
    without = {name: value for name, value in DEFAULTS.items() if name != "NOTIFY_MODE"}
    assert setting_problems(CONTRACT, without, read) == []  # a pending name may be missing
    assert setting_problems(CONTRACT, {**DEFAULTS, "NOTIFY_MODE": "dry_run"}, read) == []
    assert setting_problems(CONTRACT, {**DEFAULTS, "NOTIFY_MODE": "send"}, read) == [
        "NOTIFY_MODE: the contract's default is 'dry_run', the code's 'send'"]
    assert setting_problems(CONTRACT, {**DEFAULTS, "NOTIFY_SENDER": "me@example.com"}, read) == [
        "NOTIFY_SENDER: the contract gives no default (required for `send`), the code 'me@example.com'"]


def test_the_infrastructure_values_come_from_the_contract() -> None:
    assert CONTRACT.infra_values() == {"COLLECTOR_SCHEDULE": "0 0 */6 * * *", "EXCEPTIONS_FILE": "exceptions.json"}
    broken = parse(replaced(contract_text(), "infra sets `0 0 */6 * * *`", "infra sets `0 0 */4 * * *`"))
    assert broken.infra_values()["COLLECTOR_SCHEDULE"] == "0 0 */4 * * *"


# --------------------------------------------------------------------------------------------------------------------
# Key Vault secrets


def secrets_read(auth: str, sink: str) -> set[str]:
    return set(load_settings(mode_env(auth, sink)).secret_names_needed())


def secret_problems(contract: Contract, secrets_for: typing.Callable[[str, str], set[str]]) -> list[str]:
    problems = []
    for auth in AuthMode:
        for sink in SinkKind:
            modes = {auth.value, sink.value}
            expected = set().union(*(names for applies, names in contract.secrets if applies <= modes))
            actual = secrets_for(auth.value, sink.value)
            if actual != expected:
                problems.append(
                    f"{auth} + {sink}: the code reads {sorted(actual)}, the contract says {sorted(expected)}")
    return problems


def test_each_combination_of_modes_reads_the_contracts_secrets() -> None:
    assert secret_problems(CONTRACT, secrets_read) == []


def test_a_secret_missing_from_the_contract_is_found() -> None:
    broken = parse(replaced(contract_text(), "| `data_collector` sink | `log-analytics-workspace-key` |\n", ""))
    assert secret_problems(broken, secrets_read) == [
        "access_key + data_collector: the code reads ['aws-access-key-id', 'aws-secret-access-key', "
        "'log-analytics-workspace-key'], the contract says ['aws-access-key-id', 'aws-secret-access-key']",
        "web_identity + data_collector: the code reads ['log-analytics-workspace-key'], the contract says []"]


# --------------------------------------------------------------------------------------------------------------------
# Tables and fields


def code_tables() -> list[Table]:
    return [value for value in vars(records).values() if isinstance(value, Table)]


def table_problems(contract: Contract, tables: list[Table], defaults: Mapping[str, str]) -> list[str]:
    # The stream of a table with a stream setting is that setting's default; of any other, the one the records name.
    streams = {KEYS_TABLE.table: defaults["LOGS_INGESTION_KEYS_STREAM"],
               RUNS_TABLE.table: defaults["LOGS_INGESTION_RUNS_STREAM"]}
    declared = {(row.table, row.log_type, row.stream) for row in contract.tables}
    in_tables_section = {row.table for row in contract.tables}
    problems = []
    for table in tables:
        if table.table in streams or table.table in in_tables_section:
            found = (table.table, table.log_type, streams.get(table.table, table.stream))
            if found not in declared:
                problems.append(f"{table.table}: the code's (table, Log-Type, stream) {found} is not in the contract")
            if table.file_name not in contract.files:
                problems.append(f"{table.table}: the file {table.file_name} is not in the contract")
        elif not all(f"`{name}`" in contract.pending_table_text for name in (table.table, table.file_name)):
            problems.append(f"{table.table}: a table of the code that the contract does not declare")
    missing = {row.table for row in contract.tables} - {table.table for table in tables}
    problems += [f"{name}: in the contract, not in shared/records.py" for name in sorted(missing)]
    return problems


def test_the_tables_are_the_contracts() -> None:
    assert table_problems(CONTRACT, code_tables(), DEFAULTS) == []


def test_a_table_that_differs_from_the_contract_is_found() -> None:
    broken = parse(replaced(contract_text(), "| `AwsIamKeyCollectorRuns` |", "| `AwsIamCollectorRuns` |"))
    assert table_problems(broken, code_tables(), DEFAULTS) == [
        "AwsIamKeyCollectorRuns_CL: the code's (table, Log-Type, stream) ('AwsIamKeyCollectorRuns_CL', "
        "'AwsIamKeyCollectorRuns', 'Custom-AwsIamKeyCollectorRuns') is not in the contract"]
    renamed_stream = {**DEFAULTS, "LOGS_INGESTION_KEYS_STREAM": "Custom-Keys"}
    assert len(table_problems(CONTRACT, code_tables(), renamed_stream)) == 1
    undeclared = Table("AwsIamRoles_CL", "AwsIamRoles", "AwsIamRoles.jsonl", KeyRecord)
    assert table_problems(CONTRACT, [*code_tables(), undeclared], DEFAULTS) == [
        "AwsIamRoles_CL: a table of the code that the contract does not declare"]
    assert table_problems(CONTRACT, [KEYS_TABLE, CREDENTIALS_TABLE], DEFAULTS) == [
        "AwsIamKeyCollectorRuns_CL: in the contract, not in shared/records.py"]


def column_type(contract_type: str) -> tuple[str, bool]:
    """(Log Analytics type, nullable) of the contract's words, e.g. "ISO 8601 UTC or null" -> ("datetime", True)."""
    nullable = contract_type.endswith(" or null")
    words = contract_type.removesuffix(" or null").split(" (")[0]
    return CONTRACT_TYPES[words], nullable


def nullable_fields(record_type: type) -> set[str]:
    hints = typing.get_type_hints(record_type)
    return {name for name, hint in hints.items()
            if isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)}


def field_problems(fields: Mapping[str, Field], record_type: type) -> list[str]:
    code = dict(columns(record_type))
    nullable = nullable_fields(record_type)
    name_of = record_type.__name__
    problems = []
    for name, field in fields.items():
        if name not in code:
            if not field.pending:
                problems.append(f"{name}: in the contract, not in {name_of}")
            continue
        expected = column_type(field.type_cell)
        if (code[name], name in nullable) != expected:
            problems.append(f"{name}: {name_of} has {code[name]}{' or null' if name in nullable else ''}, the "
                            f"contract {field.type_cell}")
    problems += [f"{name}: in {name_of}, not in the contract (docs/contract.md)" for name in code if name not in fields]
    return problems


def credentials_problems(contract: Contract, tables: list[Table]) -> list[str]:
    """The new credentials table is declared by a paragraph, not a field table: its fields must be named there (or be
    the key record's privilege fields it refers to)."""
    problems = []
    for table in tables:
        if table.table in (KEYS_TABLE.table, RUNS_TABLE.table):
            continue
        for name, _ in columns(table.record_type):
            if f"`{name}`" not in contract.pending_table_text and name not in contract.key_fields:
                problems.append(f"{table.table}.{name}: not named by the contract")
    return problems


def test_the_fields_are_the_contracts() -> None:
    assert field_problems(CONTRACT.key_fields, KeyRecord) == []
    assert field_problems(CONTRACT.run_fields, RunRecord) == []
    assert field_problems(CONTRACT.credential_fields, CredentialRecord) == []
    assert credentials_problems(CONTRACT, code_tables()) == []


def test_a_credential_field_that_differs_from_the_contract_is_found() -> None:
    broken = parse(replaced(contract_text(), "| `ExpiresAt` | ISO 8601 UTC or null |",
                            "| `ExpiresAt` | ISO 8601 UTC |"))
    assert field_problems(broken.credential_fields, CredentialRecord) == [
        "ExpiresAt: CredentialRecord has datetime or null, the contract ISO 8601 UTC"]
    assert field_problems(CONTRACT.credential_fields, record_copy(CredentialRecord, drop="NoExpiry")) == [
        "NoExpiry: in the contract, not in CredentialRecord"]
    # the privilege fields are the key record's: a null Privileged would differ from it
    assert field_problems(CONTRACT.credential_fields, record_copy(
        CredentialRecord, drop="Privileged", add={"Privileged": bool | None})) == [
        "Privileged: CredentialRecord has boolean or null, the contract bool"]


def test_the_credentials_table_is_declared_with_its_stream() -> None:
    assert ("AwsIamCredentials_CL", "AwsIamCredentials", CREDENTIALS_TABLE.stream) in {
        (row.table, row.log_type, row.stream) for row in CONTRACT.tables}
    broken = parse(replaced(contract_text(), "| `AwsIamCredentials` | `Custom-AwsIamCredentials` |",
                            "| `AwsIamCredentials` | `Custom-AwsIamCredential` |"))
    assert table_problems(broken, code_tables(), DEFAULTS) == [
        "AwsIamCredentials_CL: the code's (table, Log-Type, stream) ('AwsIamCredentials_CL', 'AwsIamCredentials', "
        "'Custom-AwsIamCredentials') is not in the contract"]


def record_copy(base: type, drop: str = "", add: dict[str, Any] | None = None) -> type:
    """A copy of a record type without one field and with others added: the broken records the checks must catch."""
    hints = typing.get_type_hints(base)
    kept = [(f.name, hints[f.name], f) for f in dataclasses.fields(base) if f.name != drop]
    extra = [(name, hint, dataclasses.field(default=None)) for name, hint in (add or {}).items()]
    return dataclasses.make_dataclass(base.__name__, kept + extra)


def test_a_contract_field_missing_from_the_records_is_found() -> None:
    assert field_problems(CONTRACT.key_fields, record_copy(KeyRecord, drop="Owner")) == [
        "Owner: in the contract, not in KeyRecord"]
    assert field_problems(CONTRACT.run_fields, record_copy(RunRecord, drop="OutboxItemsDeadLettered")) == [
        "OutboxItemsDeadLettered: in the contract, not in RunRecord"]


def test_a_record_field_missing_from_the_contract_is_found() -> None:
    assert field_problems(CONTRACT.run_fields, record_copy(RunRecord, add={"RecordsLost": int})) == [
        "RecordsLost: in RunRecord, not in the contract (docs/contract.md)"]


def test_a_field_of_another_type_is_found() -> None:
    broken = parse(replaced(contract_text(), "| `AgeDays` | int |", "| `AgeDays` | string |"))
    assert field_problems(broken.key_fields, KeyRecord) == ["AgeDays: KeyRecord has int, the contract string"]
    broken = parse(replaced(contract_text(), "| `AccessKeyId` | string or null |", "| `AccessKeyId` | string |"))
    assert field_problems(broken.key_fields, KeyRecord) == [
        "AccessKeyId: KeyRecord has string or null, the contract string"]


def test_a_pending_field_may_be_missing_but_not_differ() -> None:
    assert CONTRACT.key_fields["RiskScore"].pending
    assert field_problems(CONTRACT.key_fields, KeyRecord) == []  # present, as the contract types it
    assert field_problems(CONTRACT.key_fields, record_copy(KeyRecord, drop="RiskScore")) == []  # pending: may be absent
    assert field_problems(CONTRACT.key_fields, record_copy(KeyRecord, drop="RiskScore", add={"RiskScore": str})) == [
        "RiskScore: KeyRecord has string, the contract int"]


def test_a_credentials_field_the_contract_does_not_name_is_found() -> None:
    credential = dataclasses.make_dataclass("CredentialRecord", [("CredentialType", str), ("SecretValue", str)])
    table = Table("AwsIamCredentials_CL", "AwsIamCredentials", "AwsIamCredentials.jsonl", credential,
                  "Custom-AwsIamCredentials")
    assert table_problems(CONTRACT, [*code_tables(), table], DEFAULTS) == []
    assert credentials_problems(CONTRACT, [*code_tables(), table]) == [
        "AwsIamCredentials_CL.SecretValue: not named by the contract"]
    assert "SecretValue: in CredentialRecord, not in the contract (docs/contract.md)" in field_problems(
        CONTRACT.credential_fields, credential)


def replaced(text: str, old: str, new: str) -> str:
    assert old in text, f"the contract no longer contains {old!r}: update the broken copy"
    return text.replace(old, new, 1)


@pytest.mark.parametrize("title", ["App settings", "Key Vault secrets (only what the modes need)", "Tables",
                                   "Key record (JSON field names as sent)", "Run record", "Credential record",
                                   "Additions of 2026-12-04"])
def test_the_contract_keeps_its_sections(title: str) -> None:
    """The parser reads these sections by title: a renamed one must fail here, not silently empty a comparison."""
    assert f"\n## {title}\n" in contract_text()


def test_the_contract_says_it_is_in_force() -> None:
    opening = contract_text().split("\n## ", 1)[0]
    assert "contract in force" in opening and "../shared/contract.md" in opening
    assert "changes only when an issue says so" in opening
