"""Post verdicts an operator can trust, end to end on the SSM emulator after a real prep run:
a server left unpatched because its prep QC failed, agents lost during the window, and a
kernel newer than the one staged."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows import linux_qc_patching_post, linux_qc_patching_prep
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_verdict import InstancePost, PostVerdict
from flows.store import Store
from tests.flows.linux_patching.post.servers import ACCOUNT, REGION, RhelServer, rhel_server
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

CHANGE = "CHG0015001"
STAGED = "4.18.0-553.16.1.el8_10"
NEWER = "4.18.0-553.45.1.el8_10"


@dataclass
class WindowAftermath:
    """Five servers prepped with ``STAGED``, then changed as a patch window might leave them."""

    patched: RhelServer  # booted the staged kernel, agents up
    newer: RhelServer  # booted a later build than the one staged
    prep_failed: RhelServer  # CrowdStrike in RFM at prep: QC failed, nothing staged
    falcon_gone: RhelServer  # CrowdStrike running at prep, uninstalled during the window
    bigfix_stopped: RhelServer  # BigFix running at prep, stopped during the window

    @property
    def all(self) -> list[RhelServer]:
        return [self.patched, self.newer, self.prep_failed, self.falcon_gone, self.bigfix_stopped]


def prep_then_patch(world: SsmWorld, provider: str) -> WindowAftermath:
    world.command_delay(pending=0.05)
    servers = WindowAftermath(*(rhel_server(world, f"app-0{n}") for n in range(1, 6)))
    servers.prep_failed.crowdstrike_in_rfm()
    rows = [f"{CHANGE},{s.instance_id},{ACCOUNT},{REGION}" for s in servers.all]
    prep = linux_qc_patching_prep(
        change_csv="change_number,instance_id,account_id,region\n" + "\n".join(rows) + "\n",
        provider=provider,
        kernel_choices=STAGED,
    )
    assert set(prep.staged_kernels()) == {s.instance_id for s in servers.all} - {
        servers.prep_failed.instance_id
    }
    for server in (servers.patched, servers.falcon_gone, servers.bigfix_stopped):
        server.boot(STAGED + ".x86_64", 300)
    servers.newer.boot(NEWER + ".x86_64", 300)
    servers.falcon_gone.agents(falcon="absent")
    servers.bigfix_stopped.agents(bigfix="inactive")
    return servers


def verdicts(result: PostResult) -> dict[str, InstancePost]:
    return {i.instance_id: i for i in result.instances}


@pytest.mark.usefixtures("asserting_events_worker")
def test_post_tells_prep_failures_lost_agents_and_newer_kernels_apart(
    ssm_world: SsmWorld, emulated_provider: str
) -> None:
    servers = prep_then_patch(ssm_world, emulated_provider)

    result = linux_qc_patching_post(CHANGE, provider=emulated_provider)

    by_id = verdicts(result)
    assert by_id[servers.patched.instance_id].verdict is PostVerdict.PASSED
    # Left alone on purpose: its own verdict, naming the prep verdict and why.
    unpatched = by_id[servers.prep_failed.instance_id]
    assert unpatched.verdict is PostVerdict.NOT_PATCHED_PREP_FAILED
    [reason] = unpatched.reasons
    assert f"the prep QC of change {CHANGE} failed" in reason
    assert "CrowdStrike" in reason
    # Agents the window lost fail, named with their prep state.
    gone = by_id[servers.falcon_gone.instance_id]
    assert gone.verdict is PostVerdict.FAILED
    assert gone.reasons == [
        "CrowdStrike (falcon-sensor) was running at prep QC and is not installed now: the change "
        "must not remove or stop it; reinstall or start it and find out what removed it"
    ]
    stopped = by_id[servers.bigfix_stopped.instance_id]
    assert stopped.verdict is PostVerdict.FAILED
    assert [r.split(":")[0] for r in stopped.reasons] == [
        "BigFix (besclient) was running at prep QC and is installed but not running now"
    ]
    # A later build than staged is said so, versions compared as versions.
    newer = by_id[servers.newer.instance_id]
    assert newer.verdict is PostVerdict.FAILED
    [why] = newer.reasons
    assert why.startswith(f"Kernel newer than staged ({NEWER} > {STAGED})")

    # The unpatched server is no post failure: not in the tally, not in the event.
    assert result.verdict_counts() == {"passed": 1, "failed": 3, "not_patched_prep_failed": 1}
    [run] = [r for r in Store.default().runs_for_change(CHANGE) if r.workflow.endswith("post")]
    assert (run.success_count, run.failure_count) == (1, 3)
    EventsWorker.instance().drain()
    assert AssertingEventsClient.last is not None
    [event] = [e for e in AssertingEventsClient.last.events if e.event == "cloudops.post.failed"]
    assert event.payload["counts"] == {"passed": 1, "failed": 3}


def test_accept_newer_kernel_passes_a_later_build_with_a_note(
    ssm_world: SsmWorld, emulated_provider: str
) -> None:
    servers = prep_then_patch(ssm_world, emulated_provider)

    result = linux_qc_patching_post(
        CHANGE,
        instances=[servers.newer.target(), servers.patched.target()],
        provider=emulated_provider,
        accept_newer_kernel=True,
    )

    newer = verdicts(result)[servers.newer.instance_id]
    assert newer.verdict is PostVerdict.PASSED
    assert newer.report is not None
    assert f"Kernel newer than staged ({NEWER} > {STAGED}): accepted (accept_newer_kernel)" in (
        newer.report.notes
    )
    assert newer.drift.kernel_after == NEWER + ".x86_64"
