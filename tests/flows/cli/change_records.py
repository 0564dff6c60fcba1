"""Builders of a change's records, written through the store the way the flows write them:
``WorkflowRun.record_step`` with each instance's result and parsed payload, decisions through
``record_decision``. The patch window's payloads are its own models, dumped as it dumps them:
an ``InstancePreflight`` per instance in step ``preflight``, an ``InstanceOutcome`` in steps
``wave-<n>`` and ``not-started``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.changes import ChangeSpec
from flows.common.runs import WorkflowRun
from flows.linux_patching.post_check import PostReport
from flows.linux_patching.prep_record import StagedInstance
from flows.linux_patching.qc_report import QcReport
from flows.linux_patching.window.preflight import (
    InstancePreflight,
    PreflightFacts,
    PreflightVerdict,
)
from flows.linux_patching.window.result import FinalStatus, InstanceOutcome
from flows.store import Store
from providers.base import Platform, ResultStatus, ScriptResult, Target
from providers.local import LocalProvider

CHANGE = "CHG0077001"
ACCOUNT = "111111111111"
REGION = "us-east-1"
KERNEL_BEFORE = "4.18.0-553.5.1.el8_10.x86_64"
STAGED = "4.18.0-553.45.1.el8_10"
GROUP = "RHEL8.10 - Kernel 4.18.0-553"


def instance(n: int) -> str:
    return f"i-0{n:016x}"


def target(
    n: int, name: str | None = None, region: str = REGION, platform: Platform = Platform.LINUX
) -> Target:
    return Target(
        instance_id=instance(n),
        account_id=ACCOUNT,
        region=region,
        name=name or f"web-{n:02d}",
        platform=platform,
    )


def change(*numbers: int, number: str = CHANGE) -> ChangeSpec:
    return ChangeSpec(change_number=number, targets=[target(n) for n in numbers])


def result(n: int, status: ResultStatus = ResultStatus.SUCCESS, stdout: str = "") -> ScriptResult:
    started = datetime.now(UTC) - timedelta(minutes=5)
    return ScriptResult(
        instance_id=instance(n),
        account_id=ACCOUNT,
        region=REGION,
        status=status,
        exit_code=0 if status is ResultStatus.SUCCESS else None,
        stdout=stdout,
        command_id=str(uuid.uuid4()) if status is ResultStatus.SUCCESS else None,
        error=None if status is ResultStatus.SUCCESS else f"agent {status.value}",
        started_at=started,
        ended_at=started + timedelta(seconds=30),
    )


def qc(passed: bool, host: str, *reasons: str) -> dict[str, Any]:
    report = QcReport(
        hostname=host,
        kernel=KERNEL_BEFORE,
        distro="RHEL8.10",
        crowdstrike_running=passed,
        repos_passed=True,
        disk_passed=True,
        available_kernels=[STAGED],
        passed=passed,
        failure_reasons=list(reasons),
    )
    return report.model_dump(mode="json")


def post(passed: bool, host: str, kernel: str, *reasons: str) -> dict[str, Any]:
    report = PostReport(
        summary_found=True,
        hostname=host,
        kernel_running=kernel,
        kernel_target=STAGED,
        kernel_match=passed,
        passed=passed,
        failure_reasons=list(reasons),
    )
    return report.model_dump(mode="json")


def checked(
    n: int,
    verdict: PreflightVerdict,
    *reasons: str,
    status: ResultStatus = ResultStatus.SUCCESS,
) -> dict[str, Any]:
    """web-<n> after the window's preflight; what its script found only when it ran."""
    facts = PreflightFacts(
        hostname=f"web-{n:02d}",
        kernel_running=KERNEL_BEFORE,
        patchme="present",
        patchme_kernel=STAGED,
    )
    check = InstancePreflight(
        instance_id=instance(n),
        account_id=ACCOUNT,
        region=REGION,
        name=f"web-{n:02d}",
        group=GROUP,
        staged_kernel=STAGED,
        verdict=verdict,
        status=status,
        reasons=list(reasons),
        facts=facts if status is ResultStatus.SUCCESS else None,
    )
    return check.model_dump(mode="json")


def outcome(
    n: int, status: FinalStatus, *reasons: str, kernel_after: str | None = None
) -> dict[str, Any]:
    """web-<n>'s final status in the window, as its wave (wave 1) records it."""
    final = InstanceOutcome(
        instance_id=instance(n),
        account_id=ACCOUNT,
        region=REGION,
        hostname=f"web-{n:02d}",
        group=GROUP,
        wave=1,
        status=status,
        reasons=list(reasons),
        target=STAGED,
        kernel_before=KERNEL_BEFORE,
        kernel_after=kernel_after,
    )
    return final.model_dump(mode="json")


@dataclass
class ChangeRecords:
    """One change's runs, each written as its flow writes it."""

    store: Store
    number: str = CHANGE
    flow_runs: dict[str, str] = field(default_factory=dict)

    def run(self, workflow: str, label: str) -> WorkflowRun:
        flow_run_id = str(uuid.uuid4())
        self.flow_runs[label] = flow_run_id
        return WorkflowRun(
            workflow=workflow,
            provider=LocalProvider(),
            store=self.store,
            change=self.number,
            flow_run_id=flow_run_id,
            run_name=label,
        )

    def prep(self, label: str, verdicts: dict[int, dict[str, Any] | ResultStatus]) -> WorkflowRun:
        """``initial_qc``: a QC payload per reached instance, a status for the others."""
        run = self.run("linux-qc-patching-prep", label)
        results, parsed = [], {}
        for n, verdict in verdicts.items():
            if isinstance(verdict, ResultStatus):
                results.append(result(n, verdict))
            else:
                results.append(result(n, stdout=f"===== QC report for {verdict.get('hostname')}"))
                parsed[instance(n)] = verdict
        run.record_step("initial_qc", results, parsed)
        return run

    def stage(self, run: WorkflowRun, *numbers: int) -> None:
        """``stage_kernels``: STAGED written in patchme.sh on each of ``numbers``."""
        staged = {
            instance(n): StagedInstance(
                instance_id=instance(n),
                group=GROUP,
                kernel=STAGED,
                status=ResultStatus.SUCCESS,
                staged_kernel=STAGED,
            ).model_dump(mode="json")
            for n in numbers
        }
        run.record_step("stage_kernels", [result(n) for n in numbers], staged)

    def window(
        self,
        label: str,
        steps: dict[str, dict[int, dict[str, Any]]],
        unreached: dict[int, ResultStatus] | None = None,
    ) -> WorkflowRun:
        """A patch window: per step (``preflight``, ``wave-1``...) each instance's payload; its
        command's status is ``unreached`` for those named there, else success."""
        run = self.run("linux-qc-patching-window", label)
        for step, payloads in steps.items():
            run.record_step(
                step,
                [result(n, (unreached or {}).get(n, ResultStatus.SUCCESS)) for n in payloads],
                {instance(n): payload for n, payload in payloads.items()},
            )
        return run

    def post(self, label: str, payloads: dict[int, dict[str, Any] | ResultStatus]) -> WorkflowRun:
        run = self.run("linux-qc-patching-post", label)
        results, parsed = [], {}
        for n, payload in payloads.items():
            if isinstance(payload, ResultStatus):
                results.append(result(n, payload))
            else:
                results.append(result(n))
                parsed[instance(n)] = payload
        run.record_step("post_qc", results, parsed)
        return run

    def decide(
        self, run: WorkflowRun, kind: str, decision: str, approver: str, reason: str
    ) -> None:
        self.store.record_decision(
            run.flow_run_id,
            run.workflow,
            self.number,
            kind=kind,
            decision=decision,
            approver=approver,
            reason=reason,
        )


def through_prep_window_and_post(store: Store) -> ChangeRecords:
    """CHG0077001 with five servers, through prep (run twice), a window and post:

    - web-01: passed QC, staged, patched, post passed;
    - web-02: failed QC on CrowdStrike at first, passed the second prep, staged, the install
      failed in wave 1;
    - web-03: passed, staged, patched, but post failed (kernel mismatch);
    - web-04: offline at QC, refused at the window's preflight;
    - web-05: Windows, not applicable.
    """
    windows = target(5, platform=Platform.WINDOWS)
    store.save_change(
        ChangeSpec(change_number=CHANGE, targets=[*change(1, 2, 3, 4).targets, windows])
    )
    records = ChangeRecords(store)
    records.prep(
        "prep-first",
        {
            1: qc(True, "web-01"),
            2: qc(False, "web-02", "CrowdStrike is not running"),
            3: qc(True, "web-03"),
            4: ResultStatus.OFFLINE,
            5: ResultStatus.SKIPPED,
        },
    )
    second = records.prep("prep-second", {2: qc(True, "web-02")})
    records.stage(second, 1, 2, 3)
    ready = PreflightVerdict.READY
    window = records.window(
        "window",
        {
            "preflight": {
                1: checked(1, ready),
                2: checked(2, ready),
                3: checked(3, ready),
                4: checked(
                    4,
                    PreflightVerdict.REFUSED,
                    "not reachable: agent offline",
                    status=ResultStatus.OFFLINE,
                ),
            },
            "wave-1": {
                1: outcome(1, FinalStatus.PATCHED, kernel_after=STAGED + ".x86_64"),
                2: outcome(2, FinalStatus.INSTALL_FAILED, "dnf: no space left on /boot"),
                3: outcome(3, FinalStatus.PATCHED, kernel_after=STAGED + ".x86_64"),
            },
        },
        unreached={4: ResultStatus.OFFLINE},
    )
    records.decide(window, "approval", "approved", "Jane Doe", "window opened on time")
    records.decide(window, "halt", "continue", "Raj Patel", "one install failure, budget is 2")
    records.post(
        "post",
        {
            1: post(True, "web-01", STAGED + ".x86_64"),
            3: post(False, "web-03", KERNEL_BEFORE, "running kernel is not the target"),
            5: ResultStatus.SKIPPED,
        },
    )
    return records
