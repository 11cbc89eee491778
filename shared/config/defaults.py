"""Every setting's default, in one place (the contract, docs/contract.md, names them; docs/settings.md explains them).

Settings without an entry here have no default: they are required in the modes that read them
(``shared/config/modes.py``).
"""

from __future__ import annotations

from shared.findings.exceptions_file import DEFAULT_MAX_DAYS

DEFAULTS: dict[str, str] = {
    "AWS_AUTH_MODE": "access_key",
    "AWS_ACCESS_KEY_ID_SECRET": "aws-access-key-id",
    "AWS_SECRET_ACCESS_KEY_SECRET": "aws-secret-access-key",
    "AWS_ACCOUNTS": "home",
    "AWS_MEMBER_ROLE_NAME": "AwsIamKeyCollector",
    "AWS_REGION": "us-east-1",
    "LOG_SINK": "logs_ingestion",
    "LOGS_INGESTION_KEYS_STREAM": "Custom-AwsIamAccessKeys",
    "LOGS_INGESTION_RUNS_STREAM": "Custom-AwsIamKeyCollectorRuns",
    "LOG_ANALYTICS_WORKSPACE_KEY_SECRET": "log-analytics-workspace-key",
    "LOG_ANALYTICS_DOMAIN": "ods.opinsights.azure.com",
    "FILE_SINK_DIR": "out",
    "KEY_ROTATION_DAYS": "90",
    "KEY_UNUSED_DAYS": "45",
    "COLLECTOR_ACCOUNT_CONCURRENCY": "32",  # measured: benchmarks/README.md (many-small, W1)
    "COLLECTOR_IAM_CONCURRENCY": "24",
    "COLLECTOR_IAM_MAX_CALLS_PER_SECOND": "0",
    "OUTBOX_CONTAINER": "collector-outbox",
    "OUTBOX_MAX_RECORDS": "500000",
    "OUTBOX_MAX_AGE_HOURS": "48",
    "OWNER_TAG_KEYS": "owner,Owner,email,contact",
    "EXCEPTIONS_MAX_DAYS": str(DEFAULT_MAX_DAYS),  # with its range, defined with the exceptions file's format
    "EXCEPTIONS_SOURCE": "file",
    "EXCEPTIONS_CONTAINER": "collector-config",
    "EXCEPTIONS_BLOB": "exceptions.json",
    "NOTIFY_MODE": "dry_run",  # owner digests: a deployment never mails anyone by surprise (shared/config/notify.py)
}
