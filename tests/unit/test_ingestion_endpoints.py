"""LOGS_INGESTION_ENDPOINT takes both forms Azure gives: a data collection rule's own Logs Ingestion endpoint (the
default deployment: a rule of kind Direct, no data collection endpoint) and a data collection endpoint's (vnetEnabled),
both on the production allow-list of shared/config/endpoints.py, with no test-only opt-in."""

from __future__ import annotations

import pytest

from shared.config.endpoints import PRODUCTION, logs_ingestion_problem
from tests.support.azure_fakes import DCR_INGESTION_HOST

SETTING = "LOGS_INGESTION_ENDPOINT"


@pytest.mark.parametrize(
    "url",
    [
        f"https://{DCR_INGESTION_HOST}",  # the rule's own endpoint: <rule name>-<suffix>.<region>-1.ingest...
        "https://dce-k7x2q9m4abcde-wq3z.swedencentral-1.ingest.monitor.azure.com",  # a data collection endpoint
        "https://dcr-k7x2q9m4abcde-a1b2.usgovvirginia-1.ingest.monitor.azure.us",
        "https://dcr-k7x2q9m4abcde-a1b2.chinanorth3-1.ingest.monitor.azure.cn",
    ],
)
def test_both_endpoint_forms_are_allowed_in_production(url: str) -> None:
    assert logs_ingestion_problem(SETTING, url, PRODUCTION) is None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"https://{DCR_INGESTION_HOST}.evil.example", "not on the cloud's own domain"),  # a look-alike
        (f"http://{DCR_INGESTION_HOST}", "must be https"),
        ("https://ingest.monitor.azure.com", "not on the cloud's own domain"),  # no endpoint name
    ],
)
def test_look_alikes_are_refused(url: str, said: str) -> None:
    problem = logs_ingestion_problem(SETTING, url, PRODUCTION)
    assert problem is not None and said in problem and SETTING in problem
