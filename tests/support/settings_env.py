"""Environments for settings tests: the least an operator sets, and the values it uses."""

from __future__ import annotations

ROLE = "arn:aws:iam::111122223333:role/AwsIamKeyCollectorHome"
DCE = "https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com"
DCR = "dcr-0123456789abcdef0123456789abcdef"
VAULT = "https://kv-collector.vault.azure.net/"
WORKSPACE = "0b9d0f6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def minimal(**extra: str) -> dict[str, str]:
    """The least an operator sets for the defaults (access_key + logs_ingestion)."""
    env = {"AWS_ROLE_ARN": ROLE, "KEY_VAULT_URL": VAULT, "LOGS_INGESTION_ENDPOINT": DCE, "LOGS_INGESTION_RULE_ID": DCR}
    env.update(extra)
    return env
