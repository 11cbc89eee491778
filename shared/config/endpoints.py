"""Where a credential may go: the allow-lists of the hosts that receive a token or a signed request.

Token-bearing Azure endpoints must be https on the cloud's own domains (Azure public cloud, Azure US Government,
Azure operated by 21Vianet in China), as Microsoft documents them:

- Logs Ingestion (a data collection endpoint, or a rule's own endpoint): ``*.ingest.monitor.azure.com``,
  ``*.ingest.monitor.azure.us``, ``*.ingest.monitor.azure.cn``; a monitor token goes there.
- Key Vault: ``*.vault.azure.net``, ``*.vault.usgovcloudapi.net``, ``*.vault.azure.cn``; a vault token goes there.
- Blob storage (the outbox): ``*.blob.core.windows.net``, ``*.blob.core.usgovcloudapi.net``,
  ``*.blob.core.chinacloudapi.cn``; a storage token goes there.
- Azure Communication Services (``NOTIFY_EMAIL_ENDPOINT``, the owner digests' e-mail): ``*.communication.azure.com``
  (``https://<name>.<geo>.communication.azure.com``); a communication token goes there.
- Data Collector API domain (``LOG_ANALYTICS_DOMAIN``): ``ods.opinsights.azure.com``, ``ods.opinsights.azure.us``,
  ``ods.opinsights.azure.cn``; a SharedKey-signed request goes to ``<workspace>.<domain>``.

AWS endpoints set through boto3's own settings (``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``) must be
https, except on loopback (127.0.0.0/8, ::1, localhost): traffic that never leaves the machine, as the demo's and the
tests' emulated AWS uses. Over plain http, AssumeRoleWithWebIdentity's body (with the Entra token) and every signed
IAM request would cross the network in clear text.

A test that needs another host (the local HTTPS fakes on 127.0.0.1) opts in through the composition root
(``ClientOptions.endpoints``), never through a setting: production always runs with ``PRODUCTION``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.config.transport import EndpointPolicy as EndpointPolicy  # re-exported: settings and tests name it here

LOGS_INGESTION_SUFFIXES = (".ingest.monitor.azure.com", ".ingest.monitor.azure.us", ".ingest.monitor.azure.cn")
KEY_VAULT_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn")
BLOB_SUFFIXES = (".blob.core.windows.net", ".blob.core.usgovcloudapi.net", ".blob.core.chinacloudapi.cn")
COMMUNICATION_SUFFIXES = (".communication.azure.com",)
DATA_COLLECTOR_DOMAINS = ("ods.opinsights.azure.com", "ods.opinsights.azure.us", "ods.opinsights.azure.cn")

AWS_ENDPOINT_SETTING = re.compile(r"^AWS_ENDPOINT_URL(_[A-Z0-9_]+)?$", re.ASCII)
# One DNS label (what a wildcard of the allow-list stands for): the vault, account or endpoint name.
_LABELS = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.ASCII)


# The clouds' own domains only. EndpointPolicy itself lives in shared/config/transport.py, with ClientOptions that
# carries it.
PRODUCTION = EndpointPolicy()


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _on_suffixes(host: str, suffixes: tuple[str, ...]) -> bool:
    return any(host.endswith(s) and _LABELS.match(host[: -len(s)]) is not None for s in suffixes)


def _azure_url_problem(
    setting: str, value: str, suffixes: tuple[str, ...], example: str, policy: EndpointPolicy
) -> str | None:
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return f"{setting}: not a URL; expected {example}"
    if parts.scheme != "https":
        return f"{setting}: must be https (a token is sent there); expected {example}"
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return f"{setting}: must carry no user name, password, query or fragment; expected {example}"
    if host in policy.extra_azure_hosts or _on_suffixes(host, suffixes):
        return None
    return (
        f"{setting}: host {host or '(none)'} is not on the cloud's own domain (a token is sent there); expected "
        f"{example} (allowed: *{', *'.join(suffixes)})"
    )


def logs_ingestion_problem(setting: str, value: str, policy: EndpointPolicy = PRODUCTION) -> str | None:
    return _azure_url_problem(
        setting, value, LOGS_INGESTION_SUFFIXES, "https://<endpoint>.<region>-1.ingest.monitor.azure.com", policy
    )


def key_vault_problem(setting: str, value: str, policy: EndpointPolicy = PRODUCTION) -> str | None:
    problem = _azure_url_problem(setting, value, KEY_VAULT_SUFFIXES, "https://<vault>.vault.azure.net/", policy)
    if problem is None and urlsplit(value).path not in ("", "/"):
        return f"{setting}: expected the vault's URL only, like https://<vault>.vault.azure.net/ (no path)"
    return problem


def blob_service_problem(setting: str, value: str, policy: EndpointPolicy = PRODUCTION) -> str | None:
    return _azure_url_problem(setting, value, BLOB_SUFFIXES, "https://<account>.blob.core.windows.net", policy)


def communication_problem(setting: str, value: str, policy: EndpointPolicy = PRODUCTION) -> str | None:
    example = "https://<name>.<geo>.communication.azure.com"
    problem = _azure_url_problem(setting, value, COMMUNICATION_SUFFIXES, example, policy)
    if problem is None and urlsplit(value).path not in ("", "/"):
        return f"{setting}: expected the Communication Services endpoint only, like {example} (no path)"
    return problem


def data_collector_domain_problem(setting: str, value: str, policy: EndpointPolicy = PRODUCTION) -> str | None:
    if value.lower() in DATA_COLLECTOR_DOMAINS or value.lower() in policy.extra_azure_hosts:
        return None
    return (
        f"{setting}: {value!r} is not a Data Collector API domain (a signed request is sent there); expected one of "
        f"{', '.join(DATA_COLLECTOR_DOMAINS)}"
    )


def aws_endpoint_problems(environ: Mapping[str, str]) -> list[str]:
    """boto3's own endpoint settings: https, or any scheme on loopback. Each refusal names the setting."""
    problems = []
    for name in sorted(n for n in environ if AWS_ENDPOINT_SETTING.match(n)):
        value = environ[name].strip()
        if not value:
            continue
        try:
            parts = urlsplit(value)
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            problems.append(f"{name}: not a URL")
            continue
        if parts.scheme not in ("http", "https") or not host:
            problems.append(f"{name}: expected an https URL")
        elif parts.username is not None or parts.password is not None:
            problems.append(f"{name}: must carry no user name or password")
        elif parts.scheme != "https" and not is_loopback(host):
            problems.append(
                f"{name}: must be https (AWS sign-in and signed IAM requests are sent there); plain http is allowed "
                f"only on loopback (127.0.0.1, ::1, localhost), not {host}"
            )
    return problems
