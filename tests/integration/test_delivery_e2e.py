"""A run interrupted by a sink outage delivers every record on the next run: each counted once (no duplicates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.composition import compose
from shared.config.settings import load_settings
from shared.delivery.outbox import FileOutbox
from shared.errors import DeliveryDeferredError
from shared.tools.cli import InMemorySecrets
from shared.tools.demo import SeededOrganization, seed_organization
from tests.support.aws_proxy import AwsProxy
from tests.support.collect import env_for
from tests.support.sinks import FlakySink


@pytest.fixture
def org(aws: AwsProxy, moto_url: str) -> SeededOrganization:
    return seed_organization(moto_url)


def test_outage_then_recovery_delivers_everything_once(aws: AwsProxy, org: SeededOrganization, tmp_path: Path) -> None:
    settings = load_settings(env_for(org, tmp_path, AWS_ACCOUNTS="organization"))
    sink = FlakySink()
    secrets = InMemorySecrets(org.secrets())

    sink.down = True
    with compose(settings, secrets=secrets, sink=sink) as collector, pytest.raises(DeliveryDeferredError) as info:
        collector.run()
    assert "kept in the outbox" in str(info.value) and "next run delivers them first" in str(info.value)
    outbox = FileOutbox(tmp_path / "outbox")
    records = org.expected_keys + org.expected_credentials  # keys, and the other long-lived credentials
    assert sum(i.rows for i in outbox.items()) == records + 1  # every record and the run record
    assert sink.delivered == []

    sink.down = False
    with compose(settings, secrets=secrets, sink=sink) as collector:
        second = collector.run()
    assert (second.replayed, second.deferred, second.dropped) == (records + 1, 0, 0)
    assert outbox.items() == []

    runs = [row for table, row in sink.delivered if table == "AwsIamKeyCollectorRuns_CL"]
    keys = [row for table, row in sink.delivered if table == "AwsIamAccessKeys_CL"]
    first_run_id = next(r["RunId"] for r in runs if r["RunId"] != second.run.run_id)
    assert [r["RecordsDeferred"] for r in runs if r["RunId"] == first_run_id] == [records]
    credentials = [row for table, row in sink.delivered if table == "AwsIamCredentials_CL"]
    for run_id in (first_run_id, second.run.run_id):
        mine = [k for k in keys if k["RunId"] == run_id]
        assert len(mine) == len({k["AccessKeyFingerprint"] for k in mine}) == org.expected_keys  # no duplicates
        others = [c for c in credentials if c["RunId"] == run_id]
        assert len(others) == len({c["CredentialFingerprint"] for c in others}) == org.expected_credentials
    assert json.loads(runs[-1]["FailedAccounts"]) == []
