"""linux-qc-patching-post end to end on the SSM agent emulator, after a real prep run.

The change is prepped by ``linux-qc-patching-prep`` (QC, kernel staged, files collected), then
"patched" by changing what the fake servers report as their running kernel and uptime, then
validated. The servers are fake RHEL 8 hosts (``tests/fake_post_hosts.py``) in emulator
sandboxes; the AWS provider is the real one, acting in moto through the emulator.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401 (fixture)

from flows import linux_qc_patching_post, linux_qc_patching_prep
from flows.linux_patching.post.parameters import PostParameterError
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_verdict import InstancePost, PostVerdict
from flows.parsers import AgentState, KernelTargetSource
from flows.store import Store
from providers.base import ResultStatus
from tests.flows.linux_patching.post.servers import (
    ACCOUNT,
    KERNEL_BEFORE,
    REGION,
    RhelServer,
    rhel_server,
)
from tests.prefect_artifacts import read_artifacts
from tests.ssm_emulator import EmulatedInstance, SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

CHANGE = "CHG0012345"
STAGED = "4.18.0-553.45.1.el8_10"
KERNEL_AFTER = STAGED + ".x86_64"


def _csv(servers: list[RhelServer], windows: EmulatedInstance) -> str:
    rows = [f"{CHANGE},{s.instance_id},{ACCOUNT},{REGION},linux,{s.instance.name}" for s in servers]
    rows.append(f"{CHANGE},{windows.instance_id},{ACCOUNT},{REGION},windows,win-01")
    return "change_number,instance_id,account_id,region,platform,name\n" + "\n".join(rows) + "\n"


def _artifact_rows(key: str) -> list[dict[str, Any]]:
    artifacts = read_artifacts(keys=[key])
    assert artifacts, f"no artifact {key}"
    latest = max(artifacts, key=lambda a: a.created)
    data = latest.data
    return json.loads(data) if isinstance(data, str) else data


@dataclass
class PatchedChange:
    """A change prepped, then patched: web-01 and web-02 were patched and rebooted, web-03 was
    not, web-04 is down, web-02's change folder was cleaned up (only the prep record names its
    target), web-05 was built after prep; plus a Windows server. Then the post check ran."""

    web1: RhelServer
    web2: RhelServer
    web3: RhelServer
    web4: RhelServer
    late: RhelServer
    windows: EmulatedInstance
    result: PostResult
    files_before: dict[str, dict[str, str]]
    sent: dict[str, int]

    def by_id(self) -> dict[str, InstancePost]:
        return {i.instance_id: i for i in self.result.instances}

    @property
    def checked(self) -> tuple[RhelServer, ...]:
        return (self.web1, self.web2, self.web3, self.late)


def prep_patch_and_check(world: SsmWorld, provider: str) -> PatchedChange:
    """Prep a change of four servers and a Windows one, patch some of them, run post."""
    world.command_delay(pending=0.05)
    web1, web2, web3, web4 = (rhel_server(world, f"web-0{n}") for n in range(1, 5))
    windows = world.add_instance(
        account_id=ACCOUNT, region=REGION, platform="windows", name="win-01"
    )
    prep = linux_qc_patching_prep(
        change_csv=_csv([web1, web2, web3, web4], windows),
        provider=provider,
        kernel_choices=STAGED,
    )
    assert prep.staged_kernels() == {s.instance_id: STAGED for s in (web1, web2, web3, web4)}

    web1.boot(KERNEL_AFTER, 300)
    web2.boot(KERNEL_AFTER, 300)
    (web2.instance.root / "root" / CHANGE / "patchme.sh").unlink()
    world.set_offline(web4.instance_id)
    late = rhel_server(world, "web-05")  # built after prep: the prep flow has never seen it
    late.boot(KERNEL_AFTER, 300)
    files_before = {s.instance_id: s.digest() for s in (web1, web2, web3, late)}
    sent_before = dict(world.send_commands_per_instance)

    stored = Store.default().load_change(CHANGE)
    assert stored is not None
    result = linux_qc_patching_post(
        CHANGE, instances=[*stored.targets, late.target()], provider=provider, target_kernel=STAGED
    )
    sent = {
        iid: n - sent_before.get(iid, 0)
        for iid, n in world.send_commands_per_instance.items()
        if n - sent_before.get(iid, 0)
    }
    return PatchedChange(web1, web2, web3, web4, late, windows, result, files_before, sent)


def check_the_verdicts(change: PatchedChange) -> None:
    by_id = change.by_id()
    assert change.result.verdict_counts() == {
        "passed": 3,
        "failed": 1,
        "unreachable": 1,
        "not_applicable": 1,
    }
    # Patched and matching: each with the target from where it was found.
    for server, source in (
        (change.web1, KernelTargetSource.PATCHME),
        (change.web2, KernelTargetSource.PREP),
        (change.late, KernelTargetSource.PARAMETER),
    ):
        checked = by_id[server.instance_id]
        assert checked.verdict is PostVerdict.PASSED, checked.reasons
        assert checked.drift.kernel_after == KERNEL_AFTER
        assert checked.drift.kernel_target == STAGED
        assert checked.drift.kernel_target_source is source
        assert checked.drift.agents_after["falcon-sensor"] is AgentState.RUNNING
    assert by_id[change.web4.instance_id].verdict is PostVerdict.UNREACHABLE
    assert by_id[change.web4.instance_id].status is ResultStatus.OFFLINE
    assert by_id[change.windows.instance_id].verdict is PostVerdict.NOT_APPLICABLE


def check_the_drift(change: PatchedChange) -> None:
    by_id = change.by_id()
    for server in (change.web1, change.web2):
        drift = by_id[server.instance_id].drift
        assert drift.prep_record and drift.qc_before == "passed"
        assert drift.kernel_before == KERNEL_BEFORE
        assert drift.kernel_changed is True and drift.rebooted is True
        assert drift.crowdstrike_before is True
    # Not patched: fails with the mismatch, and the drift shows nothing moved.
    unpatched = by_id[change.web3.instance_id]
    assert unpatched.verdict is PostVerdict.FAILED
    assert unpatched.reasons == [f"Kernel mismatch: running {KERNEL_BEFORE}, expected {STAGED}"]
    assert unpatched.drift.kernel_before == unpatched.drift.kernel_after == KERNEL_BEFORE
    assert unpatched.drift.kernel_changed is False and unpatched.drift.rebooted is False
    newcomer = by_id[change.late.instance_id].drift
    assert not newcomer.prep_record and newcomer.qc_before == "no prep record"


def check_sent_once_and_read_only(change: PatchedChange) -> None:
    # Sent once to each reachable Linux server; never to the offline or the Windows one.
    assert change.sent == {s.instance_id: 1 for s in change.checked}
    # Read-only: not a file of the servers changed.
    assert {s.instance_id: s.digest() for s in change.checked} == change.files_before


def check_the_tables(change: PatchedChange) -> None:
    web1, web3, late = change.web1.instance_id, change.web3.instance_id, change.late.instance_id
    drift_rows = {r["instance"]: r for r in _artifact_rows("linux-qc-post-chg0012345-drift")}
    assert drift_rows[web3]["kernel before"] == drift_rows[web3]["kernel after"] == KERNEL_BEFORE
    assert drift_rows[web3]["rebooted"] == "no"
    assert drift_rows[web1]["kernel before"] == KERNEL_BEFORE
    assert drift_rows[web1]["kernel after"] == KERNEL_AFTER
    assert drift_rows[web1]["rebooted"] == "yes"
    assert drift_rows[late]["QC before"] == "no prep record"
    failed = {r["instance"] for r in _artifact_rows("linux-qc-post-chg0012345-failed")}
    assert failed == {web3, change.web4.instance_id, change.windows.instance_id}
    passed = {r["instance"] for r in _artifact_rows("linux-qc-post-chg0012345-passed")}
    assert passed == {web1, change.web2.instance_id, late}


def check_the_report_and_the_store(change: PatchedChange) -> None:
    report = Path(change.result.report_path)
    assert re.fullmatch(rf"qc_post_report_{CHANGE}_\d{{8}}T\d{{6}}Z\.md", report.name)
    text = report.read_text()
    assert f"Kernel mismatch: running {KERNEL_BEFORE}, expected {STAGED}" in text
    assert f"no prep record for: {change.late.instance_id}" in text

    by_id = change.by_id()
    recorded = Store.default().latest_executions(CHANGE, "linux-qc-patching-post", "post_qc")
    assert set(recorded) == set(by_id)
    assert recorded[change.web1.instance_id].parsed is not None
    assert recorded[change.web1.instance_id].parsed["kernel_match"] is True
    unpatched = recorded[change.web3.instance_id].parsed
    assert unpatched is not None
    assert unpatched["failure_reasons"] == by_id[change.web3.instance_id].reasons
    assert recorded[change.web4.instance_id].status is ResultStatus.OFFLINE
    [run] = [
        r for r in Store.default().runs_for_change(CHANGE) if r.workflow == "linux-qc-patching-post"
    ]
    assert (run.status, run.success_count, run.failure_count) == ("partial", 3, 2)


def check_the_failure_event(change: PatchedChange) -> None:
    EventsWorker.instance().drain()  # the asserting worker, while the fixture is on
    assert AssertingEventsClient.last is not None
    [failure] = [e for e in AssertingEventsClient.last.events if e.event == "cloudops.post.failed"]
    assert failure.resource.id == f"cloudops.change.{CHANGE}"
    assert failure.payload["counts"] == change.result.verdict_counts()


@pytest.mark.usefixtures("asserting_events_worker")
def test_prepped_then_patched_change_passes_where_the_kernel_matches(
    ssm_world: SsmWorld, emulated_provider: str
) -> None:
    change = prep_patch_and_check(ssm_world, emulated_provider)

    check_the_verdicts(change)
    check_the_drift(change)
    check_sent_once_and_read_only(change)
    check_the_tables(change)
    check_the_report_and_the_store(change)
    check_the_failure_event(change)


@pytest.mark.parametrize(
    ("change_number", "target_kernel", "workdir", "problem"),
    [
        ("CHG 1; rm -rf /", None, "/root", "change_number"),
        (CHANGE, "4.18.0-553.45.1.el8_10; reboot", "/root", "target_kernel"),
        (CHANGE, None, "root", "workdir"),
        (CHANGE, None, "/root/../etc", "workdir"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_sent(
    ssm_world: SsmWorld,
    emulated_provider: str,
    change_number: str,
    target_kernel: str | None,
    workdir: str,
    problem: str,
) -> None:
    server = rhel_server(ssm_world, "web-01")

    with pytest.raises(PostParameterError, match=problem) as refused:
        linux_qc_patching_post(
            change_number,
            instances=[server.target()],
            provider=emulated_provider,
            target_kernel=target_kernel,
            workdir=workdir,
        )

    assert "nothing was sent" in str(refused.value)
    assert not ssm_world.send_commands_per_instance
    assert ("ssm", "DescribeInstanceInformation") not in ssm_world.calls
