"""Two flow runs at once in the same account and region share SSM's API budget through the
Prefect global rate limit ``ssm-<account>-<region>``: together they never call SSM there faster
than the limit lets them, and both finish.

Each run is its own process, started as a worker starts it, against the SSM emulator served
over HTTP; the emulator notes when each request arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.states import StateType

from flows.store import Store
from tests.reliability.fleet import CALLER_ACCOUNT
from tests.reliability.flow_processes import create_run_script_run, start_flow_run, wait_for_exit
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

REGION = "us-east-1"
LIMIT = f"ssm-{CALLER_ACCOUNT}-{REGION}"
BURST = 1
PER_SECOND = 1.0
PER_RUN = 60  # two commands of at most 50 each: four commands polled at once in all
SPENDING = {"DescribeInstanceInformation", "SendCommand", "ListCommandInvocations"}


@pytest.fixture
def ssm_rate_limit() -> Iterator[str]:
    """The limit an operator makes once: ``prefect gcl create <name> --limit 1
    --slot-decay-per-second 1``, through the same API."""
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=LIMIT, limit=BURST, slot_decay_per_second=PER_SECOND)
        )
    yield LIMIT
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(LIMIT)


def most_in_any_second(moments: list[float]) -> int:
    """The most requests that arrived within any one second."""
    ordered = sorted(moments)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] > 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_two_runs_at_once_share_the_ssm_rate_limit_of_their_account_and_region(
    ssm_world: SsmWorld, bridged_aws: str, ssm_rate_limit: str, tmp_path: Path
) -> None:
    # Each invocation takes 3 s: the runs poll their commands side by side meanwhile.
    ssm_world.command_delay(pending=0.05, in_progress_min=3.0)
    ssm_world.simulate(lambda instance, script: ("ok\n", "", 0))
    fleets = [
        [ssm_world.add_instance(account_id=CALLER_ACCOUNT, region=REGION) for _ in range(PER_RUN)]
        for _ in range(2)
    ]
    runs = [
        create_run_script_run(
            {
                "script": "echo ok",
                "targets": [
                    {"instance_id": i.instance_id, "account_id": CALLER_ACCOUNT, "region": REGION}
                    for i in fleet
                ],
                "change_number": f"CHG-RATE-{n}",
                "provider": bridged_aws,
                "timeout_seconds": 60,
            }
        )
        for n, fleet in enumerate(fleets)
    ]
    processes = [start_flow_run(run.id, tmp_path / f"run-{n}.log") for n, run in enumerate(runs)]
    for n, process in enumerate(processes):
        wait_for_exit(process, tmp_path / f"run-{n}.log", timeout=240)

    with get_client(sync_client=True) as client:
        for run in runs:
            state = client.read_flow_run(run.id).state
            assert state is not None and state.type is StateType.COMPLETED
    for n in range(2):
        [record] = Store.default().runs_for_change(f"CHG-RATE-{n}")
        assert (record.success_count, record.failure_count) == (PER_RUN, 0)
    spent = [
        r.at
        for r in ssm_world.requests
        if r.service == "ssm"
        and r.operation in SPENDING
        and (r.account, r.region) == (CALLER_ACCOUNT, REGION)
    ]
    # Both runs called there (each sent its two commands)...
    assert sum(c.account_id == CALLER_ACCOUNT for c in ssm_world.commands) == 4
    # ...and together never faster than the limit: its burst plus a second's worth of decay
    # (one more for a call that arrived a moment after its slot was granted). Without the
    # limit these two runs reach 6 calls in their busiest second on the emulator.
    assert most_in_any_second(spent) <= BURST + PER_SECOND + 1, sorted(spent)
