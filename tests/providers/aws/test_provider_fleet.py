"""``AwsProvider.execute_script_batch`` on a fleet across accounts, regions and partitions, on
the SSM agent emulator (scripts really run, in one sandbox per instance)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from providers.aws.provider import AwsProvider
from providers.base import (
    BatchStatus,
    CommandProgress,
    CommandRef,
    Platform,
    ResultStatus,
    Target,
)
from tests.providers.aws.ssm_fixtures import (
    GOV_ACCOUNT,
    HOME_ACCOUNT,
    ROLE_ACCOUNT,
    Fleet,
    targets_of,
)
from tests.ssm_emulator import EmulatedInstance

# Prints what only this instance knows (a file in its own sandbox), then behaves as its
# sandbox tells it to: exit with a given code, or run far past its timeout.
SCRIPT = r"""
echo "instance $(cat "$CLOUDOPS_ROOT/etc/instance-id")"
if [ -f "$CLOUDOPS_ROOT/etc/exit-code" ]; then exit "$(cat "$CLOUDOPS_ROOT/etc/exit-code")"; fi
if [ -f "$CLOUDOPS_ROOT/etc/slow" ]; then sleep 30; fi
echo "done on $AWS_SSM_REGION_NAME"
"""


def counting(provider: AwsProvider) -> tuple[AwsProvider, Counter[str]]:
    """The same provider, counting its poll rounds per command (observed, not replaced)."""
    polls: Counter[str] = Counter()
    original = provider.poll

    def poll(ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        polls[ref.command_id] += 1
        return original(ref, finished)

    provider.poll = poll  # type: ignore[method-assign]
    return provider, polls


@dataclass
class MixedFleet:
    """120 instances over two accounts, three commercial regions and GovCloud, four of them
    odd (a failing script, a slow one, an offline agent, an unmanaged instance), plus two
    Windows instances: one listed as Linux (SSM knows better), one listed as Windows."""

    instances: list[EmulatedInstance]
    failing: EmulatedInstance
    slow: EmulatedInstance
    offline: EmulatedInstance
    unmanaged: EmulatedInstance
    hidden_windows: EmulatedInstance
    listed_windows: EmulatedInstance
    targets: list[Target]

    @property
    def special(self) -> set[str]:
        odd = (self.failing, self.slow, self.offline, self.unmanaged)
        return {i.instance_id for i in (*odd, self.hidden_windows, self.listed_windows)}

    @property
    def not_sent(self) -> set[str]:
        left_out = (self.offline, self.unmanaged, self.hidden_windows, self.listed_windows)
        return {i.instance_id for i in left_out}


def build_mixed_fleet(fleet: Fleet) -> MixedFleet:
    world = fleet.world
    layout = {
        (HOME_ACCOUNT, "us-east-1"): 60,
        (HOME_ACCOUNT, "eu-west-1"): 16,
        (ROLE_ACCOUNT, "us-east-1"): 16,
        (ROLE_ACCOUNT, "us-west-2"): 16,
        (GOV_ACCOUNT, "us-gov-west-1"): 12,
    }
    groups = {key: fleet.add(n, *key) for key, n in layout.items()}
    instances = [i for group in groups.values() for i in group]
    failing, slow, offline, unmanaged = groups[(HOME_ACCOUNT, "us-east-1")][:4]
    failing.write_file("/etc/exit-code", "3\n")
    slow.write_file("/etc/slow", "")
    world.set_offline(offline.instance_id)
    world.set_unmanaged(unmanaged.instance_id)
    hidden_windows = world.add_instance(HOME_ACCOUNT, "us-east-1", platform="windows")
    listed_windows = world.add_instance(ROLE_ACCOUNT, "us-west-2", platform="windows")
    targets = targets_of(instances)
    targets += targets_of([hidden_windows], platform=Platform.LINUX)
    targets += targets_of([listed_windows])
    return MixedFleet(
        instances, failing, slow, offline, unmanaged, hidden_windows, listed_windows, targets
    )


def test_120_instances_over_accounts_regions_and_govcloud(fleet: Fleet):
    world = fleet.world
    mixed = build_mixed_fleet(fleet)
    assert len(mixed.instances) == 120

    provider, polls = counting(fleet.provider())
    batch = provider.execute_script_batch(mixed.targets, SCRIPT, timeout=2)

    by_id = {r.instance_id: r for r in batch.results}
    assert len(batch.results) == len(mixed.targets) == len(by_id)
    for instance in mixed.instances:
        if instance.instance_id in mixed.special:
            continue
        result = by_id[instance.instance_id]
        assert result.status is ResultStatus.SUCCESS, result
        assert result.stdout == f"instance {instance.instance_id}\ndone on {instance.region}\n"
        assert result.exit_code == 0
        assert (result.account_id, result.region) == (instance.account_id, instance.region)
        assert not result.stdout_truncated and result.command_id

    failing = by_id[mixed.failing.instance_id]
    assert (failing.status, failing.exit_code) == (ResultStatus.FAILED, 3)
    assert failing.stdout == f"instance {mixed.failing.instance_id}\n"
    assert by_id[mixed.slow.instance_id].status is ResultStatus.TIMED_OUT
    assert "execution timeout" in by_id[mixed.slow.instance_id].error
    assert by_id[mixed.offline.instance_id].status is ResultStatus.OFFLINE
    assert "ConnectionLost" in by_id[mixed.offline.instance_id].error
    assert by_id[mixed.unmanaged.instance_id].status is ResultStatus.NOT_MANAGED
    assert "not registered with SSM" in by_id[mixed.unmanaged.instance_id].error
    for windows in (mixed.hidden_windows, mixed.listed_windows):
        assert by_id[windows.instance_id].status is ResultStatus.SKIPPED
        assert "windows" in by_id[windows.instance_id].error
    assert batch.status is BatchStatus.PARTIAL
    assert (batch.success_count, batch.failure_count) == (120 - 4, 6)

    # Budget: one SendCommand per 50 sendable instances of a group, each instance sent once.
    sendable = Counter(
        (i.account_id, i.region) for i in mixed.instances if i.instance_id not in mixed.not_sent
    )
    assert fleet.calls("SendCommand") == sum(math.ceil(n / 50) for n in sendable.values()) == 6
    sent = world.send_commands_per_instance
    assert set(sent) == {i.instance_id for i in mixed.instances} - mixed.not_sent
    assert set(sent.values()) == {1}
    # DescribeInstanceInformation: one call per 50 targets of a group (61 in the first).
    assert fleet.calls("DescribeInstanceInformation") == 2 + 4
    # One ListCommandInvocations per command per poll round; no output fetch at all, since
    # every output fitted in ListCommandInvocations' 2,500 characters.
    assert fleet.calls("ListCommandInvocations") == sum(polls.values())
    assert set(polls) == {c.command_id for c in world.commands}
    assert fleet.calls("GetCommandInvocation") == 0
    # The GovCloud group went to GovCloud endpoints with GovCloud keys only.
    gov_requests = [r for r in world.requests if r.region.startswith("us-gov-")]
    assert gov_requests and {r.account for r in gov_requests} == {GOV_ACCOUNT}
    assert all(r.answered_by in ("emulator", "moto") for r in world.requests)


def test_throttling_loses_and_duplicates_no_instance(fleet: Fleet):
    world = fleet.world
    instances = fleet.add(60, HOME_ACCOUNT, "us-east-1") + fleet.add(50, ROLE_ACCOUNT, "us-west-2")
    world.throttle(share=0.3, services=("ssm",), seed=7)

    provider, polls = counting(fleet.provider())
    batch = provider.execute_script_batch(targets_of(instances), SCRIPT, timeout=30)

    assert batch.status is BatchStatus.SUCCESS
    assert sorted(r.instance_id for r in batch.results) == sorted(i.instance_id for i in instances)
    for instance, result in zip(
        sorted(instances, key=lambda i: (i.account_id, i.region, i.instance_id)),
        batch.results,
        strict=True,
    ):
        assert result.stdout.startswith(f"instance {instance.instance_id}\n")
    sent = world.send_commands_per_instance
    assert len(sent) == 110 and set(sent.values()) == {1}
    throttled = world.throttled
    assert sum(throttled.values()) > 0
    accepted_sends = fleet.calls("SendCommand") - throttled[("ssm", "SendCommand")]
    assert accepted_sends == 3
    answered_polls = (
        fleet.calls("ListCommandInvocations") - throttled[("ssm", "ListCommandInvocations")]
    )
    assert answered_polls == sum(polls.values())
