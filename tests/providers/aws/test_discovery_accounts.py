"""Accounts (Organizations) and regions (EC2) as the AWS provider lists them, on moto."""

from __future__ import annotations

import logging

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr

from providers.aws.config import AwsProviderConfig
from providers.aws.provider import AwsProvider
from providers.aws.settings import LegacyCredentials
from providers.partitions import Environment


def _provider(environment: Environment = Environment.COM) -> AwsProvider:
    config = AwsProviderConfig(
        environment=environment,
        access_key_id=SecretStr("AKIAIOSFODNN7EXAMPLE"),
        secret_access_key=SecretStr("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    )
    return AwsProvider(config, legacy=LegacyCredentials(_env_file=None))


@pytest.fixture
def aws():
    with mock_aws():
        yield


def test_accounts_come_from_organizations_across_pages(aws):
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    for n in range(25):
        org.create_account(AccountName=f"team-{n:02d}", Email=f"team{n}@example.com")
    accounts = _provider().enumerate_accounts()
    names = {a.account_name for a in accounts}
    # 25 members plus the management account; moto pages list_accounts by 20.
    assert len(accounts) == 26
    assert {f"team-{n:02d}" for n in range(25)} <= names
    assert all(len(a.account_id) == 12 for a in accounts)
    assert {a.environment for a in accounts} == {Environment.COM}


def test_an_empty_organization_lists_the_callers_account_and_says_so(aws, caplog):
    provider = _provider()
    own = provider.validate_credentials().account_id
    with caplog.at_level(logging.WARNING, logger="providers.aws.discovery"):
        accounts = provider.enumerate_accounts()
    assert [a.account_id for a in accounts] == [own]
    assert f"listing only the caller's own account {own}" in caplog.text


def test_regions_are_the_enabled_ones_of_the_partition(aws):
    regions = _provider().enumerate_regions()
    assert "us-east-1" in regions and "eu-west-1" in regions
    # moto lists me-south-1 as not opted in; GovCloud regions belong to the other partition
    assert "me-south-1" not in regions
    assert not any(r.startswith("us-gov-") for r in regions)
    assert regions == sorted(regions)


def test_govcloud_regions_for_a_govcloud_provider(aws):
    regions = _provider(Environment.GOV).enumerate_regions()
    assert regions == ["us-gov-east-1", "us-gov-west-1"]
