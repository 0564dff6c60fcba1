"""GovCloud credentials never go to a commercial endpoint, nor the reverse.

One ``run-script`` over both partitions (each with its caller account and a member account
reached through the cross-account role), with the legacy ``AWS_*_COM`` and ``AWS_*_GOV``
variables as credentials. The emulator records the endpoint host and the signing key of every
request; each key is traced to the partition that issued it (the IAM users, and the role
sessions STS handed out), and each host to the partition of its region.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from moto.sts.models import sts_backends

from flows import run_script
from flows.common.targets import TargetSelectionError
from providers.base import ResultStatus, Target
from providers.partitions import partition_of_region
from tests.reliability.figures import Figures
from tests.reliability.fleet import PRINT_OWN_ID
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

COM_CALLER, COM_MEMBER = "111111111111", "222222222222"
GOV_CALLER, GOV_MEMBER = "333333333333", "444444444444"
PLACES = (
    (COM_CALLER, "us-east-1"),
    (COM_MEMBER, "us-west-2"),
    (GOV_CALLER, "us-gov-west-1"),
    (GOV_MEMBER, "us-gov-east-1"),
)
PER_PLACE = 15


def _fleet(world: SsmWorld) -> list[Target]:
    world.add_role(COM_MEMBER, partition="aws")
    world.add_role(GOV_MEMBER, partition="aws-us-gov")
    world.command_delay(pending=0.05)
    return [
        Target(instance_id=world.add_instance(account, region).instance_id, **where)
        for account, region in PLACES
        for where in [{"account_id": account, "region": region}]
        for _ in range(PER_PLACE)
    ]


def _set_legacy_keys(world: SsmWorld, monkeypatch: pytest.MonkeyPatch, *envs: str) -> dict:
    """Legacy variables for ``envs`` (``com``, ``gov``); returns key id -> partition."""
    issued = {}
    for env in envs:
        partition, account = ("aws", COM_CALLER) if env == "com" else ("aws-us-gov", GOV_CALLER)
        keys = world.credentials(account, partition=partition)
        monkeypatch.setenv(f"AWS_ACCESS_KEY_ID_{env.upper()}", keys.access_key_id)
        monkeypatch.setenv(f"AWS_SECRET_ACCESS_KEY_{env.upper()}", keys.secret_access_key)
        issued[keys.access_key_id] = partition
    return issued


def _role_session_keys() -> dict[str, str]:
    """Key id -> partition of every role session STS (moto) issued in this test."""
    issued = {}
    for by_partition in sts_backends.values():
        for backend in by_partition.values():
            for role in backend.assumed_roles:
                issued[role.access_key_id] = role.arn.split(":")[1]
    return issued


def _key_and_host_partitions(world: SsmWorld, issued: dict[str, str]) -> Counter[tuple[str, str]]:
    """(partition of the signing key, partition of the endpoint) per request."""
    pairs: Counter[tuple[str, str]] = Counter()
    for request in world.requests:
        assert request.access_key_id in issued, f"unknown key on {request}"
        pairs[(issued[request.access_key_id], partition_of_region(request.region).name)] += 1
    return pairs


def test_each_partitions_keys_go_only_to_its_own_endpoints(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch
):
    targets = _fleet(ssm_world)
    issued = _set_legacy_keys(ssm_world, monkeypatch, "com", "gov")

    started = time.monotonic()
    state = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws, return_state=True)
    result = state.result()
    wall = time.monotonic() - started

    assert result.batch.success_count == len(targets)
    issued |= _role_session_keys()
    pairs = _key_and_host_partitions(ssm_world, issued)
    assert set(pairs) == {("aws", "aws"), ("aws-us-gov", "aws-us-gov")}
    assert not [r for r in ssm_world.requests if r.answered_by.startswith("denied")]
    hosts = Counter(r.host for r in ssm_world.requests)
    # STS is asked at the regional endpoint of each partition, never the global one.
    assert "sts.amazonaws.com" not in hosts
    assert hosts["sts.us-gov-west-1.amazonaws.com"] >= 1 and hosts["sts.us-east-1.amazonaws.com"]
    Figures.of(
        "com and gov in one run",
        ssm_world,
        len(targets),
        wall,
        [state.state_details.flow_run_id],
        requests_by_key_and_endpoint_partition=dict(pairs),
        requests_by_host=dict(sorted(hosts.items())),
    ).show()


def test_govcloud_targets_without_govcloud_keys_reach_no_govcloud_endpoint(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch
):
    targets = _fleet(ssm_world)
    issued = _set_legacy_keys(ssm_world, monkeypatch, "com")
    # No ambient keys either (moto's fixture sets some): gov has no source at all.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")

    result = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws)

    by_partition: dict[str, set[ResultStatus]] = {}
    for r in result.batch.results:
        by_partition.setdefault(partition_of_region(r.region).name, set()).add(r.status)
    assert by_partition == {"aws": {ResultStatus.SUCCESS}, "aws-us-gov": {ResultStatus.ERROR}}
    gov_errors = {r.error for r in result.batch.results if r.region.startswith("us-gov-")}
    assert all("credentials are configured for com only" in (e or "") for e in gov_errors)
    issued |= _role_session_keys()
    assert set(_key_and_host_partitions(ssm_world, issued)) == {("aws", "aws")}
    assert not [r for r in ssm_world.requests if "us-gov-" in r.host]


# Regions of partitions these flows do not serve, and regions of no partition at all.
FOREIGN_REGIONS = ["cn-north-1", "cn-northwest-1", "us-iso-east-1", "us-isob-east-1", "us-east-7"]


@pytest.mark.parametrize("region", FOREIGN_REGIONS)
def test_a_discovery_region_outside_both_partitions_is_refused_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch, region: str
):
    _set_legacy_keys(ssm_world, monkeypatch, "com", "gov")

    with pytest.raises(TargetSelectionError) as refused:
        run_script(
            script=PRINT_OWN_ID,
            discovery={"regions": ["us-east-1", region]},
            provider=fast_aws,
        )

    message = str(refused.value)
    assert "discovery.regions[1]" in message and repr(region) in message
    assert "nothing was sent" in message
    assert ssm_world.requests == [], [r.host for r in ssm_world.requests]


@pytest.mark.parametrize("region", FOREIGN_REGIONS)
def test_a_target_in_a_region_outside_both_partitions_is_refused_alone_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch, region: str
):
    _set_legacy_keys(ssm_world, monkeypatch, "com", "gov")
    good = ssm_world.add_instance(COM_CALLER, "us-east-1")
    targets = [
        Target(instance_id=good.instance_id, account_id=COM_CALLER, region="us-east-1"),
        Target(instance_id="i-0123456789abcdef0", account_id=COM_MEMBER, region=region),
    ]

    result = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws)

    by_id = {r.instance_id: r for r in result.batch.results}
    assert by_id[good.instance_id].status is ResultStatus.SUCCESS
    refused = by_id["i-0123456789abcdef0"]
    assert refused.status is ResultStatus.ERROR and refused.command_id is None
    assert repr(region) in (refused.error or "") and "nothing was sent" in (refused.error or "")
    assert {r.region for r in ssm_world.requests} == {"us-east-1"}


def test_endpoint_overrides_in_the_environment_do_not_redirect_signed_calls(
    ssm_world: SsmWorld, fast_aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    targets = _fleet(ssm_world)
    _set_legacy_keys(ssm_world, monkeypatch, "com", "gov")
    # What an attacker (or a forgotten test setting) on the worker could set: every form
    # botocore reads, in the environment and in the AWS config file.
    for name in ("", "_SSM", "_STS", "_EC2", "_S3"):
        host = f"collector{name.lower().replace('_', '-')}.example"
        monkeypatch.setenv(f"AWS_ENDPOINT_URL{name}", f"https://{host}")
    config = tmp_path / "aws-config-with-endpoints"
    config.write_text(
        "[default]\nendpoint_url = https://collector-config.example\nservices = grab\n\n"
        "[services grab]\nssm =\n  endpoint_url = https://collector-config-ssm.example\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    result = run_script(script=PRINT_OWN_ID, targets=targets, provider=fast_aws)

    assert result.batch.success_count == len(targets)
    hosts = Counter(r.host for r in ssm_world.requests)
    assert all(host.endswith(".amazonaws.com") for host in hosts), hosts
    for request in ssm_world.requests:
        assert request.host == f"{request.service}.{request.region}.amazonaws.com", request
