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

AWS endpoints (where the web identity token, the IAM user's signed AssumeRole and every signed IAM request go) must be
https on AWS's own domains for the role's partition, as botocore's partitions.json gives them (``dnsSuffix`` and
``dualStackDnsSuffix``): ``*.amazonaws.com`` and ``*.api.aws`` (aws, aws-us-gov), ``*.amazonaws.com.cn`` and
``*.api.amazonwebservices.com.cn`` (aws-cn), and the isolated partitions' own. That covers boto3's own settings
(``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>``) and every ``endpoint_url`` of the files botocore reads
(``AWS_CONFIG_FILE`` or ~/.aws/config, and ``AWS_SHARED_CREDENTIALS_FILE`` or ~/.aws/credentials, whose sections
botocore merges into the profiles): profile sections and ``[services ...]`` sections alike. On those domains, only the
host names AWS gives the endpoints of the collector's services (STS, IAM, Organizations), as botocore's endpoint rules
make them: ``<service>[-fips][.<region> | .global | .us-gov | .aws-<partition>-global].<domain>``, or a VPC
interface endpoint ``vpce-<id>.<service>.<region>.vpce.<domain>``. Anything else there is someone's resource with
a valid certificate: an API Gateway (``<id>.execute-api.<region>.amazonaws.com``), a load balancer, an S3 bucket.
Loopback only (127.0.0.0/8, ::1, localhost) may be anything, over http too: traffic that never leaves the machine, as
the demo's and the tests' emulated AWS uses.

No CA bundle may replace the trust store: ``AWS_CA_BUNDLE`` (botocore), ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE``
(requests, under azure-core and the data_collector sink) are refused unless they name the platform's own bundle (the
system's, or certifi's), and so is a config file's ``ca_bundle``. Whoever sets another can read and answer every
request (tokens, keys, signed calls) through their own certificate authority. Tests trust their local fakes' CA
through ``ClientOptions.ca_bundle`` only.

A test that needs another host (the local HTTPS fakes on 127.0.0.1) opts in through the composition root
(``ClientOptions.endpoints``), never through a setting: production always runs with ``PRODUCTION``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.config.transport import EndpointPolicy as EndpointPolicy  # re-exported: settings and tests name it here

LOGS_INGESTION_SUFFIXES = (".ingest.monitor.azure.com", ".ingest.monitor.azure.us", ".ingest.monitor.azure.cn")
KEY_VAULT_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn")
BLOB_SUFFIXES = (".blob.core.windows.net", ".blob.core.usgovcloudapi.net", ".blob.core.chinacloudapi.cn")
COMMUNICATION_SUFFIXES = (".communication.azure.com",)
DATA_COLLECTOR_DOMAINS = ("ods.opinsights.azure.com", "ods.opinsights.azure.us", "ods.opinsights.azure.cn")

# AWS's own domains by partition: botocore's data/partitions.json, dnsSuffix then dualStackDnsSuffix
# (tests/unit/test_aws_endpoints.py compares this table with the installed botocore's).
AWS_DOMAINS: dict[str, tuple[str, ...]] = {
    "aws": ("amazonaws.com", "api.aws"),
    "aws-us-gov": ("amazonaws.com", "api.aws"),
    "aws-cn": ("amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    "aws-iso": ("c2s.ic.gov", "api.aws.ic.gov"),
    "aws-iso-b": ("sc2s.sgov.gov", "api.aws.scloud"),
    "aws-iso-e": ("cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
    "aws-iso-f": ("csp.hci.ic.gov", "api.aws.hci.ic.gov"),
}
# The services the collector calls, by botocore's service ids (AWS_ENDPOINT_URL_<ID> and [services] subsections).
COLLECTOR_SERVICES = ("sts", "iam", "organizations")
# Where a service's endpoint host may be: a region, or the names the endpoint rules give global endpoints.
_LOCATION = r"[a-z]{2}(?:-[a-z0-9]+)*-[0-9]{1,2}|global|us-gov|aws(?:-[a-z]+)*-global"
# Environment variables that replace the trust store of botocore (AWS_CA_BUNDLE) or requests (the other two).
CA_BUNDLE_SETTINGS = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")

AWS_ENDPOINT_SETTING = re.compile(r"AWS_ENDPOINT_URL(_[A-Z0-9_]+)?", re.ASCII)
# One DNS label (what a wildcard of the allow-list stands for): the vault, account or endpoint name.
_LABELS = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


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
    return any(host.endswith(s) and _LABELS.fullmatch(host[: -len(s)]) is not None for s in suffixes)


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


def aws_endpoint_problems(environ: Mapping[str, str], partition: str | None = None) -> list[str]:
    """Where AWS requests may go, and whom they trust: boto3's endpoint settings, the endpoint_url and ca_bundle of
    the files botocore reads, and the CA bundle variables. Each refusal names the setting (or file and section).
    ``partition`` is the role's (None when AWS_ROLE_ARN is itself invalid: any partition's domains then)."""
    domains = AWS_DOMAINS.get(partition or "", ()) or tuple(dict.fromkeys(d for ds in AWS_DOMAINS.values() for d in ds))
    problems = []
    for name in sorted(n for n in environ if AWS_ENDPOINT_SETTING.fullmatch(n)):
        value = environ[name].strip()
        if value:
            service = name.removeprefix("AWS_ENDPOINT_URL").removeprefix("_").lower() or None
            problems += _aws_url_problems(name, value, domains, partition, service)
    for where, service, key, value in _aws_config_values(environ, problems):
        if key == "ca_bundle":
            problems.append(f"{where}: ca_bundle is not allowed (it would replace the trust store of every AWS "
                            "request); remove it")
        elif isinstance(value, str) and value.strip():
            problems += _aws_url_problems(f"{where}: endpoint_url", value.strip(), domains, partition, service)
    for name in CA_BUNDLE_SETTINGS:
        value = environ.get(name, "").strip()
        if value and not _is_platform_trust_store(value):
            problems.append(f"{name}: not allowed: a CA bundle replaces the trust store, so whoever holds that CA "
                            "could read tokens, keys and signed requests; unset it (the collector trusts the "
                            "platform's public CAs only: the system's bundle or certifi's)")
    return problems


def _is_platform_trust_store(value: str) -> bool:
    """A CA bundle variable naming the trust store in use anyway (many images set REQUESTS_CA_BUNDLE and
    AWS_CA_BUNDLE to the system's bundle): OpenSSL's compiled-in default file (not SSL_CERT_FILE, which a setting
    could change too) or certifi's, which requests and botocore use when no variable is set."""
    import ssl

    own = [ssl.get_default_verify_paths().openssl_cafile]
    try:
        import certifi  # requests' dependency: its bundle is what requests trusts by default

        own.append(certifi.where())
    except ImportError:
        pass
    return os.path.realpath(value) in {os.path.realpath(path) for path in own}


def _aws_url_problems(
    name: str, value: str, domains: tuple[str, ...], partition: str | None, service: str | None
) -> list[str]:
    """``service``: the service the setting is for (None: every service, as AWS_ENDPOINT_URL and a profile's
    endpoint_url are); one the collector does not call is held to AWS's domains only."""
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return [f"{name}: not a URL"]
    allowed = f"https://<service>.<region>.{domains[0]}" + (f" (AWS partition {partition})" if partition else "")
    if parts.scheme not in ("http", "https") or not host:
        return [f"{name}: expected an https URL like {allowed}"]
    if parts.username is not None or parts.password is not None:
        return [f"{name}: must carry no user name or password"]
    if is_loopback(host):
        return []  # never leaves the machine: the demo's and the tests' emulated AWS
    if parts.scheme != "https":
        return [f"{name}: must be https (AWS sign-in and signed IAM requests are sent there); plain http is allowed "
                f"only on loopback (127.0.0.1, ::1, localhost), not {host}"]
    if not _on_suffixes(host, tuple("." + d for d in domains)):
        return [f"{name}: host {host} is not on AWS's own domains (AWS sign-in, the web identity token and signed "
                f"IAM requests are sent there); expected {allowed} (allowed: *.{', *.'.join(domains)}, or loopback)"]
    services = COLLECTOR_SERVICES if service is None else (service,) if service in COLLECTOR_SERVICES else None
    if services is not None and not _is_service_host(host, services, domains):
        return [f"{name}: host {host} is on AWS's domains but is no endpoint of {' or '.join(services)} (AWS names "
                f"them like {services[0]}.us-east-1.{domains[0]}; any other host there, such as an API Gateway or a "
                "load balancer, can be anyone's); expected " + allowed.replace("<service>", services[0])]
    return []


def _is_service_host(host: str, services: tuple[str, ...], domains: tuple[str, ...]) -> bool:
    service = "|".join(re.escape(s) for s in services)
    domain = "|".join(re.escape(d) for d in domains)
    shape = (rf"(?:{service})(?:-fips)?(?:\.(?:{_LOCATION}))?\.(?:{domain})"
             rf"|vpce-[a-z0-9-]+\.(?:{service})(?:-fips)?\.(?:{_LOCATION})\.vpce\.(?:{domain})")
    return re.fullmatch(shape, host, re.ASCII) is not None


def _aws_config_values(
    environ: Mapping[str, str], problems: list[str]
) -> Iterator[tuple[str, str | None, str, Any]]:
    """(where, service, key, value) of every endpoint_url and ca_bundle in the config and credentials files botocore
    reads, parsed by botocore's own parser: profile sections (service None: every service), and [services ...]
    sections' per-service subsections."""
    from botocore.configloader import raw_config_parse
    from botocore.exceptions import BotoCoreError

    home = environ.get("HOME") or str(Path.home())
    for setting, default in (("AWS_CONFIG_FILE", ".aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")):
        given = environ.get(setting, "").strip()
        path = os.path.expandvars(given.replace("~", home, 1) if given.startswith("~") else given) if given \
            else str(Path(home) / default)
        if not os.path.isfile(path):
            continue
        try:
            sections = raw_config_parse(path)
        except (BotoCoreError, OSError, ValueError) as exc:
            problems.append(f"{setting} {path}: cannot be read by botocore ({type(exc).__name__}); fix or remove it")
            continue
        for section, values in sections.items():
            yield from _config_keys(f"{setting} {path} [{section}]", None, values)


def _config_keys(where: str, service: str | None, values: Any) -> Iterator[tuple[str, str | None, str, Any]]:
    if not isinstance(values, Mapping):
        return
    for key, value in values.items():
        if key in ("endpoint_url", "ca_bundle"):
            yield where, service, key, value
        elif isinstance(value, Mapping):  # a [services ...] section's subsection: sts = \n  endpoint_url = ...
            yield from _config_keys(f"{where} {key}", str(key).lower(), value)


# A region of each partition, for messages that show a valid value.
EXAMPLE_REGION = {"aws": "us-east-1", "aws-us-gov": "us-gov-west-1", "aws-cn": "cn-north-1"}


def partition_of_region(region: str) -> str:
    """The AWS partition a region belongs to (its STS and IAM endpoints live there)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if "-isob-" in region:
        return "aws-iso-b"
    if "-iso" in region:
        return "aws-iso"
    return "aws"
