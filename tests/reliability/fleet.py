"""The fleet the reliability tests run on: emulated instances spread over two accounts (the
caller's own and a member account reached through the cross-account role) and two regions,
so every run crosses AssumeRole and several (account, region) groups and commands."""

from __future__ import annotations

from providers.base import Target
from tests.ssm_emulator import EmulatedInstance, SsmWorld

CALLER_ACCOUNT = "123456789012"  # moto's default account: the credentials' own
MEMBER_ACCOUNT = "222222222222"  # reached by assuming OrganizationAccountAccessRole
PLACES = (
    (CALLER_ACCOUNT, "us-east-1"),
    (CALLER_ACCOUNT, "us-west-2"),
    (MEMBER_ACCOUNT, "us-east-1"),
    (MEMBER_ACCOUNT, "us-west-2"),
)

# Where each instance notes that the script ran on it, so a test can prove it ran once.
RUN_LOG = "/var/log/cloudops-runs"
# Notes the run, then prints the instance's own id: a result mixed up between instances, or a
# script run twice, shows.
PRINT_OWN_ID = (
    f'mkdir -p "$CLOUDOPS_ROOT/var/log" && echo ran >> "$CLOUDOPS_ROOT{RUN_LOG}"\n'
    'printf "%s\\n" "$AWS_SSM_INSTANCE_ID"\n'
)


def build_fleet(world: SsmWorld, count: int) -> list[Target]:
    """``count`` online Linux instances dealt round-robin over ``PLACES``, as targets."""
    world.add_role(MEMBER_ACCOUNT)
    targets = []
    for n in range(count):
        account, region = PLACES[n % len(PLACES)]
        inst = world.add_instance(account_id=account, region=region)
        targets.append(Target(instance_id=inst.instance_id, account_id=account, region=region))
    return targets


def times_run(instance: EmulatedInstance) -> int:
    """How many times a script of this fleet ran on ``instance``."""
    log = instance.root / RUN_LOG.lstrip("/")
    return len(log.read_text().splitlines()) if log.exists() else 0


def chunks_for(targets: list[Target]) -> int:
    """Commands a run on ``targets`` needs: one per 50 instances of each (account, region)."""
    groups: dict[tuple[str, str], int] = {}
    for t in targets:
        groups[(t.account_id, t.region)] = groups.get((t.account_id, t.region), 0) + 1
    return sum(-(-n // 50) for n in groups.values())
