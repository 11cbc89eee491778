"""Where AWS credentials go (audit finding F2), checked like Azure's: AWS endpoints only on AWS's own domains for the
role's partition (env settings and the endpoint_url of the files botocore reads), https except on loopback, no CA
bundle replacing the trust store, a web identity audience that is an api:// application URI; and the Data Collector
domain against a suffix trick."""

from __future__ import annotations

import json
from pathlib import Path

import botocore
import pytest

from shared.config import endpoints
from shared.config.endpoints import data_collector_domain_problem
from shared.config.settings import load_settings
from shared.errors import SettingsError
from tests.support.settings_env import minimal

GOV_ROLE = "arn:aws-us-gov:iam::111122223333:role/AwsIamKeyCollectorHome"
CN_ROLE = "arn:aws-cn:iam::111122223333:role/AwsIamKeyCollectorHome"


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value.problems


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_ENDPOINT_URL_STS", "https://attacker.example"),  # the web identity token would go there
        ("AWS_ENDPOINT_URL", "https://sts.amazonaws.com.attacker.example"),
        ("AWS_ENDPOINT_URL_IAM", "https://attacker.example/iam.amazonaws.com"),
        ("AWS_ENDPOINT_URL_STS", "https://evilamazonaws.com"),
        ("AWS_ENDPOINT_URL_STS", "https://amazonaws.com"),  # the bare domain is no service endpoint
        ("AWS_ENDPOINT_URL_STS", "https://sts.cn-north-1.amazonaws.com.cn"),  # another partition than the role's
        ("AWS_ENDPOINT_URL_ORGANIZATIONS", "https://10.0.0.5"),
        ("AWS_ENDPOINT_URL_STS", "http://sts.amazonaws.com"),
    ],
)
def test_an_aws_endpoint_off_aws_domains_is_refused(name: str, value: str) -> None:
    (found,) = problems(minimal(**{name: value}))
    assert found.startswith(f"{name}: ") and ("AWS's own domains" in found or "https" in found)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Anyone's resources with a valid certificate under amazonaws.com: an API Gateway stage (a Lambda behind it
        # reads the body: the web identity token), an S3 bucket named like the service, a load balancer.
        ("AWS_ENDPOINT_URL_STS", "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"),
        ("AWS_ENDPOINT_URL", "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"),
        ("AWS_ENDPOINT_URL_STS", "https://sts.s3.amazonaws.com"),
        ("AWS_ENDPOINT_URL_STS", "https://sts.s3.us-east-1.amazonaws.com/"),
        ("AWS_ENDPOINT_URL_IAM", "https://my-lb-1234.us-east-1.elb.amazonaws.com"),
        ("AWS_ENDPOINT_URL_IAM", "https://sts.amazonaws.com"),  # another service's endpoint
        ("AWS_ENDPOINT_URL_ORGANIZATIONS", "https://organizations.attacker.us-east-1.amazonaws.com"),
    ],
)
def test_an_aws_host_that_is_no_endpoint_of_the_service_is_refused(name: str, value: str) -> None:
    (found,) = problems(minimal(**{name: value}))
    assert found.startswith(f"{name}: host ") and "is no endpoint of" in found


def test_a_config_file_services_endpoint_is_held_to_its_service(tmp_path: Path) -> None:
    (found,) = problems(config_env(tmp_path, "https://iam.amazonaws.com",
                                   "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"))
    assert "[services mine] sts: endpoint_url: host a1b2c3d4e5.execute-api" in found and "no endpoint of sts" in found


@pytest.mark.parametrize(
    ("role", "name", "value"),
    [
        (None, "AWS_ENDPOINT_URL_STS", "https://sts.us-east-1.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL_STS", "https://sts-fips.us-east-1.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL_IAM", "https://iam.global.api.aws"),  # dual-stack
        (None, "AWS_ENDPOINT_URL_IAM", "https://iam-fips.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL_ORGANIZATIONS", "https://organizations-fips.us-east-1.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL_STS", "https://vpce-0a1b2c3d4e5f67890-abcdefgh.sts.us-east-1.vpce.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL", "https://sts.amazonaws.com"),
        (None, "AWS_ENDPOINT_URL_S3", "https://my-bucket.s3.amazonaws.com"),  # not a service the collector calls
        (GOV_ROLE, "AWS_ENDPOINT_URL_IAM", "https://iam.us-gov.amazonaws.com"),
        (CN_ROLE, "AWS_ENDPOINT_URL_IAM", "https://iam.cn-north-1.amazonaws.com.cn"),
        (None, "AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),  # the demo's and tests' moto, on loopback
        (None, "AWS_ENDPOINT_URL", "https://localhost:5000"),
        (None, "AWS_ENDPOINT_URL_STS", "http://[::1]:5000"),
        (GOV_ROLE, "AWS_ENDPOINT_URL_STS", "https://sts.us-gov-west-1.amazonaws.com"),
        (CN_ROLE, "AWS_ENDPOINT_URL_STS", "https://sts.cn-north-1.amazonaws.com.cn"),
    ],
)
def test_aws_own_domains_and_loopback_are_accepted(role: str | None, name: str, value: str) -> None:
    env = minimal(**{name: value})
    if role:
        env.update(AWS_ROLE_ARN=role, AWS_REGION="us-gov-west-1" if "gov" in role else "cn-north-1")
    load_settings(env)


def test_a_china_endpoint_is_refused_for_a_role_of_the_aws_partition_and_the_reverse() -> None:
    (found,) = problems(minimal(AWS_ROLE_ARN=CN_ROLE, AWS_REGION="cn-north-1",
                                AWS_ENDPOINT_URL_STS="https://sts.us-east-1.amazonaws.com"))
    assert "AWS partition aws-cn" in found and "*.amazonaws.com.cn" in found


CONFIG = """\
[default]
region = us-east-1
services = mine

[profile other]
endpoint_url = {profile}

[services mine]
sts =
  endpoint_url = {service}
"""


def config_env(tmp_path: Path, profile: str, service: str, **extra: str) -> dict[str, str]:
    path = tmp_path / "config"
    path.write_text(CONFIG.format(profile=profile, service=service), encoding="utf-8")
    return minimal(AWS_CONFIG_FILE=str(path), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), **extra)


def test_config_file_endpoints_are_checked_like_the_environments(tmp_path: Path) -> None:
    found = problems(config_env(tmp_path, "http://attacker.example", "https://sts.attacker.example"))
    path = tmp_path / "config"
    assert len(found) == 2
    assert found[0].startswith(f"AWS_CONFIG_FILE {path} [profile other]: endpoint_url: must be https")
    assert found[1].startswith(f"AWS_CONFIG_FILE {path} [services mine] sts: endpoint_url: host sts.attacker.example")
    load_settings(config_env(tmp_path, "https://iam.amazonaws.com", "http://127.0.0.1:5000"))


def test_the_credentials_file_is_checked_too_botocore_merges_it_into_the_profiles(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("[default]\nendpoint_url = https://attacker.example\n", encoding="utf-8")
    env = minimal(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"))
    (found,) = problems(env)
    assert found.startswith("AWS_SHARED_CREDENTIALS_FILE ")
    assert "[default]: endpoint_url: host attacker.example" in found


def test_a_config_file_ca_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[default]\nca_bundle = /tmp/attacker-ca.pem\n", encoding="utf-8")
    env = minimal(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    (found,) = problems(env)
    assert "[default]: ca_bundle is not allowed" in found


def test_an_unreadable_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("[default\nendpoint_url = x\n", encoding="utf-8")
    env = minimal(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    (found,) = problems(env)
    assert found.startswith(f"AWS_CONFIG_FILE {tmp_path / 'config'}: cannot be read by botocore")


@pytest.mark.parametrize("name", ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_variable_is_refused(name: str, tmp_path: Path) -> None:
    (tmp_path / "attacker-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    (found,) = problems(minimal(**{name: str(tmp_path / "attacker-ca.pem")}))
    assert found.startswith(f"{name}: not allowed: a CA bundle replaces the trust store")


@pytest.mark.parametrize(
    "audience",
    [
        "https://storage.azure.com",  # a storage token would be asked for and sent to STS
        "https://management.azure.com/",
        "https://graph.microsoft.com",
        "00000003-0000-0000-c000-000000000000",
        "api://",
        "api://x/",
        "api://x/.default",
        "api://x?y=1",
        "api://x y",
        "api://١٢٣",
    ],
)
def test_the_web_identity_audience_must_be_an_api_application_uri(audience: str) -> None:
    env = {"AWS_ROLE_ARN": minimal()["AWS_ROLE_ARN"], "AWS_AUTH_MODE": "web_identity", "LOG_SINK": "file",
           "AWS_WEB_IDENTITY_AUDIENCE": audience}
    (found,) = problems(env)
    assert found.startswith("AWS_WEB_IDENTITY_AUDIENCE: expected the application ID URI") and "api://" in found


@pytest.mark.parametrize("audience", ["api://AzureADTokenExchange", "api://0b9d0f6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                                      "api://contoso.onmicrosoft.com/aws-collector"])
def test_api_application_uris_are_accepted(audience: str) -> None:
    env = {"AWS_ROLE_ARN": minimal()["AWS_ROLE_ARN"], "AWS_AUTH_MODE": "web_identity", "LOG_SINK": "file",
           "AWS_WEB_IDENTITY_AUDIENCE": audience}
    assert load_settings(env).aws_auth.audience == audience  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "domain",
    [
        "attacker.example/ods.opinsights.azure.com",  # signed requests would go to attacker.example
        "evilods.opinsights.azure.com",
        "attacker.ods.opinsights.azure.com",
        "ods.opinsights.azure.com.attacker.example",
        "ods.opinsights.azure.com/",
    ],
)
def test_the_data_collector_domain_is_one_of_the_clouds_exactly(domain: str) -> None:
    """Kills the mutant that made this check an endswith: every other test stayed green with it."""
    found = data_collector_domain_problem("LOG_ANALYTICS_DOMAIN", domain)
    assert found is not None and found.startswith("LOG_ANALYTICS_DOMAIN: ")
    (setting,) = problems(minimal(LOG_ANALYTICS_DOMAIN=domain))
    assert setting.startswith("LOG_ANALYTICS_DOMAIN: ")
    assert data_collector_domain_problem("LOG_ANALYTICS_DOMAIN", "ods.opinsights.azure.us") is None


def test_aws_domains_are_botocores_partitions() -> None:
    """The allow-list is botocore's own partitions.json (dnsSuffix, dualStackDnsSuffix), for every partition the
    installed botocore knows (a new partition is added to the list on purpose, when it is reviewed)."""
    data = json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text(encoding="utf-8"))
    known = {p["id"]: (p["outputs"]["dnsSuffix"], p["outputs"]["dualStackDnsSuffix"]) for p in data["partitions"]}
    assert {k: v for k, v in known.items() if k in endpoints.AWS_DOMAINS} == endpoints.AWS_DOMAINS


def test_a_ca_bundle_variable_naming_the_platforms_own_store_is_accepted() -> None:
    """Many images set REQUESTS_CA_BUNDLE and AWS_CA_BUNDLE to the system's bundle: that replaces nothing."""
    import ssl

    import certifi

    system = ssl.get_default_verify_paths().openssl_cafile
    load_settings(minimal(AWS_CA_BUNDLE=certifi.where(), REQUESTS_CA_BUNDLE=system, CURL_CA_BUNDLE=system))


def test_every_endpoint_botocore_resolves_for_the_collectors_services_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The allow-list is not stricter than AWS: each endpoint botocore's own rules give STS, IAM and Organizations
    (every partition the role ARN may name, FIPS and dual-stack) passes, as the setting that would name it."""
    import itertools
    import os

    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    session = botocore.session.get_session()
    regions = {"us-east-1": minimal()["AWS_ROLE_ARN"], "eu-west-1": minimal()["AWS_ROLE_ARN"],
               "ap-southeast-2": minimal()["AWS_ROLE_ARN"], "us-gov-west-1": GOV_ROLE, "us-gov-east-1": GOV_ROLE,
               "cn-north-1": CN_ROLE, "cn-northwest-1": CN_ROLE}
    checked = 0
    variants = itertools.product(regions, ("sts", "iam", "organizations"), (False, True), (False, True))
    for region, service, fips, dual in variants:
        config = Config(use_fips_endpoint=fips, use_dualstack_endpoint=dual)
        try:
            client = session.create_client(service, region_name=region, aws_access_key_id="x",
                                           aws_secret_access_key="y", config=config)
        except BotoCoreError:  # that variant does not exist in that partition
            continue
        setting = f"AWS_ENDPOINT_URL_{service.upper()}"
        load_settings(minimal(AWS_ROLE_ARN=regions[region], AWS_REGION=region, **{setting: client.meta.endpoint_url}))
        checked += 1
    assert checked > 60
