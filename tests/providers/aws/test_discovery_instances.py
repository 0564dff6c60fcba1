"""``AwsProvider.discover_instances`` across accounts and regions (EC2 from moto, SSM's view
from the agent emulator), and the Organizations fallback when listing is refused."""

from __future__ import annotations

import logging

import pytest

from providers.aws.config import AwsProviderConfig
from providers.aws.errors import AwsError
from providers.base import DiscoveryFilter, Platform
from providers.partitions import Environment
from tests.providers.aws.ssm_fixtures import GOV_ACCOUNT, HOME_ACCOUNT, ROLE_ACCOUNT, Fleet


def test_instances_by_tag_in_every_account_and_region(fleet: Fleet):
    world = fleet.world
    ops = {"Team": "ops"}
    web = world.add_instance(HOME_ACCOUNT, "us-east-1", name="web-1", tags=ops)
    db = world.add_instance(ROLE_ACCOUNT, "us-west-2", name="db-1", tags=ops)
    win = world.add_instance(ROLE_ACCOUNT, "us-west-2", platform="windows", tags=ops)
    lost = world.add_instance(HOME_ACCOUNT, "us-east-1", tags=ops, online=False)
    bare = world.add_instance(HOME_ACCOUNT, "us-east-1", tags=ops, managed=False)
    world.add_instance(HOME_ACCOUNT, "us-east-1", tags={"Team": "dev"})
    world.add_instance(ROLE_ACCOUNT, "eu-west-1", tags=ops)  # a region not asked for
    provider = fleet.provider()

    found = provider.discover_instances(
        DiscoveryFilter(
            accounts=[HOME_ACCOUNT, ROLE_ACCOUNT], regions=["us-east-1", "us-west-2"], tags=ops
        )
    )

    by_id = {i.instance_id: i for i in found}
    assert set(by_id) == {i.instance_id for i in (web, db, win, lost, bare)}
    assert by_id[web.instance_id].name == "web-1"
    assert by_id[web.instance_id].tags == {"Team": "ops", "Name": "web-1"}
    assert (by_id[db.instance_id].account_id, by_id[db.instance_id].region) == (
        ROLE_ACCOUNT,
        "us-west-2",
    )
    assert by_id[win.instance_id].platform is Platform.WINDOWS
    assert by_id[web.instance_id].platform is Platform.LINUX
    assert by_id[web.instance_id].ssm_managed and by_id[web.instance_id].ping_status == "Online"
    assert by_id[lost.instance_id].ping_status == "ConnectionLost"
    assert not by_id[bare.instance_id].ssm_managed and by_id[bare.instance_id].ping_status is None
    assert {i.state for i in found} == {"running"}
    assert {i.environment for i in found} == {Environment.COM}
    # a found instance is a ready-made target
    assert by_id[db.instance_id].to_target().account_id == ROLE_ACCOUNT

    linux_only = provider.discover_instances(
        DiscoveryFilter(
            accounts=[ROLE_ACCOUNT], regions=["us-west-2"], tags=ops, platform=Platform.LINUX
        )
    )
    assert [i.instance_id for i in linux_only] == [db.instance_id]


def test_without_accounts_the_callers_own_account_and_default_regions(fleet: Fleet):
    mine = fleet.world.add_instance(HOME_ACCOUNT, "us-east-2")
    gov = fleet.world.add_instance(GOV_ACCOUNT, "us-gov-west-1")
    provider = fleet.provider(default_regions=("us-east-2", "us-gov-west-1"))

    found = provider.discover_instances(DiscoveryFilter())

    assert {(i.instance_id, i.account_id, i.environment) for i in found} == {
        (mine.instance_id, HOME_ACCOUNT, Environment.COM),
        (gov.instance_id, GOV_ACCOUNT, Environment.GOV),
    }


def test_a_region_that_refuses_is_reported_not_skipped(fleet: Fleet):
    fleet.world.fail_next("DescribeInstances", code="UnauthorizedOperation", service="ec2")
    provider = fleet.provider()

    with pytest.raises(AwsError) as raised:
        provider.discover_instances(DiscoveryFilter(regions=["us-east-1"]))

    assert "UnauthorizedOperation" in str(raised.value)
    assert "region us-east-1" in str(raised.value) and not raised.value.transient


@pytest.mark.parametrize("code", ["AWSOrganizationsNotInUseException", "AccessDeniedException"])
def test_accounts_fall_back_to_the_caller_when_organizations_refuses(fleet: Fleet, code, caplog):
    fleet.world.fail_next("ListAccounts", code=code, service="organizations")
    provider = fleet.provider()

    with caplog.at_level(logging.WARNING, logger="providers.aws.discovery"):
        accounts = provider.enumerate_accounts()

    assert [(a.account_id, a.environment) for a in accounts] == [(HOME_ACCOUNT, Environment.COM)]
    assert code in caplog.text and HOME_ACCOUNT in caplog.text


@pytest.mark.parametrize("region", ["cn-north-1", "us-iso-east-1", "us-isob-east-1", "us-west-9"])
def test_a_region_outside_both_partitions_is_refused_before_any_call(fleet: Fleet, region: str):
    provider = fleet.provider()

    with pytest.raises(AwsError) as refused:
        provider.discover_instances(DiscoveryFilter(regions=["us-east-1", region]))

    assert f"discovery.regions[1]: {region!r}" in str(refused.value)
    assert refused.value.transient is False
    assert fleet.world.requests == []


def test_the_credentials_of_no_partition_are_signed_for_a_china_or_iso_region(fleet: Fleet):
    provider = fleet.provider()

    for region in ("cn-north-1", "cn-northwest-1", "us-iso-west-1", "us-isob-east-1"):
        with pytest.raises(AwsError, match="which these flows do not serve"):
            provider.resolver.credentials_for(region)
        assert provider.region_problem(region, "targets[0]") is not None

    assert fleet.world.requests == []


@pytest.mark.parametrize("region", ["cn-north-1", "us-isob-east-1", "eu-nowhere-1"])
def test_a_default_region_outside_both_partitions_is_refused_in_the_settings(region: str):
    with pytest.raises(ValueError, match=rf"default_regions\[1\]: '{region}'"):
        AwsProviderConfig(default_regions=("us-east-1", region))
