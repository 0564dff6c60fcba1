"""The post-patching check of a set of servers and its verdict per server.

The post flow runs it on a whole change after the patch window; the patch window runs it on
each wave before starting the next. Read-only on the servers: ``linux/post_qc.sh`` prints a
machine-readable summary (see :mod:`flows.linux_patching.post_check`) that is judged here and
set beside the prep record (:mod:`flows.linux_patching.drift`).

The target kernel comes, in this order, from the ``newkernel`` line of
``<workdir>/<CHANGE>/patchme.sh`` on the server (the script reads it), the kernel the prep run
staged there, or a parameter. A server fails on a kernel mismatch, or CrowdStrike or BigFix
installed but not running; every other finding is informational.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from enum import StrEnum

from prefect import get_run_logger
from pydantic import BaseModel, Field

from flows.common.remote_scripts import load_script, render_script
from flows.common.runs import Tally, WorkflowRun
from flows.common.text import first_line
from flows.linux_patching.drift import InstanceDrift, compare_with_prep
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.post_check import KernelTargetSource, PostReport, parse_post_report
from flows.linux_patching.prep_record import PrepRecord
from providers.base import Platform, ResultStatus, ScriptResult, Target

POST_SCRIPT = "linux/post_qc.sh"

# The kernel told to the script, and where it came from.
PlannedTarget = tuple[str | None, KernelTargetSource]


class PostVerdict(StrEnum):
    """How one instance ended the post-patching check."""

    PASSED = "passed"
    FAILED = "failed"  # the report names why: kernel mismatch, a required agent down...
    CHECK_ERROR = "check_error"  # no usable post report came back
    UNREACHABLE = "unreachable"  # offline, unknown to SSM, or not reachable with our credentials
    NOT_APPLICABLE = "not_applicable"  # a Windows server in a Linux change


class InstancePost(BaseModel):
    """One instance after the post-patching check: its verdict, report and drift."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    name: str | None = None
    verdict: PostVerdict
    status: ResultStatus = Field(description="of the post check command, or why it was not sent")
    reasons: list[str] = Field(default_factory=list, description="why it did not pass")
    report: PostReport | None = None
    drift: InstanceDrift
    command_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is PostVerdict.PASSED


def post_script(
    change_number: str, workdir: str, target: str | None, source: KernelTargetSource
) -> str:
    """``post_qc.sh`` with its quoted parameters; a target is passed only when one is known."""
    values = {"CHANGE_NUMBER": change_number, "WORKDIR": workdir}
    if target:
        values["TARGET_KERNEL"] = target
        values["TARGET_KERNEL_SOURCE"] = source.value
    return render_script(load_script(POST_SCRIPT), values)


def planned_target(target: Target, prep: PrepRecord | None, fallback: str | None) -> PlannedTarget:
    """The target to tell the script, which ``patchme.sh`` on the instance still overrides:
    the kernel prep staged there, else ``fallback`` (a parameter; none for Windows)."""
    if target.platform is Platform.WINDOWS:
        return None, KernelTargetSource.NONE
    if prep is not None and prep.staged_kernel:
        # Read back from the store, so checked again like every value that reaches a script;
        # a record that does not hold a plain kernel version is not a target.
        try:
            return validate_kernel_version(prep.staged_kernel), KernelTargetSource.PREP
        except ValueError:
            pass
    if fallback:
        return fallback, KernelTargetSource.PARAMETER
    return None, KernelTargetSource.NONE


def run_post_checks(
    run: WorkflowRun,
    step: str,
    reachable: Sequence[Target],
    planned: Mapping[str, PlannedTarget],
    *,
    workdir: str,
    timeout_seconds: int,
    progress_key: str,
) -> list[ScriptResult]:
    """``post_qc.sh`` on every reachable instance: one run per distinct target kernel, since the
    target travels in the script's header."""
    assert run.change is not None  # the script's change folder
    by_target: dict[PlannedTarget, list[Target]] = defaultdict(list)
    for target in reachable:
        by_target[planned[target.instance_id]].append(target)
    results: list[ScriptResult] = []
    for (kernel, source), targets in by_target.items():
        get_run_logger().info(
            "post check of %d instance(s) with target %s (from %s; patchme.sh wins)",
            len(targets),
            kernel or "none",
            source.value,
        )
        script = post_script(run.change, workdir, kernel, source)
        request = run.request(step, script, timeout_seconds)
        results.extend(run.run_script(step, targets, request, progress_key=progress_key).results)
    return results


def _not_run_verdict(status: ResultStatus) -> PostVerdict:
    if status is ResultStatus.SKIPPED:
        return PostVerdict.NOT_APPLICABLE
    if status in (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED):
        return PostVerdict.UNREACHABLE
    return PostVerdict.CHECK_ERROR


def _check_problem(result: ScriptResult) -> str:
    if result.status is ResultStatus.FAILED:
        detail = first_line(result.stderr) or result.error or "no message"
        return (
            f"post_qc.sh exited with code {result.exit_code} ({detail}); read the command output "
            "on the instance and run the post check again"
        )
    return result.error or f"the post check ended {result.status.value}; run it again"


def judge_post(
    target: Target,
    result: ScriptResult,
    prep: PrepRecord | None,
    planned: PlannedTarget,
    change_number: str,
) -> InstancePost:
    """The verdict on one instance from its post check's result, with its drift since prep."""
    kernel, source = planned
    parsed: PostReport | None = None
    if result.status.reached:
        parsed = parse_post_report(result.stdout, target_kernel=kernel, target_kernel_source=source)
    report = parsed if parsed is not None and parsed.summary_found else None
    reasons: list[str]
    if result.status is ResultStatus.SUCCESS and report is not None:
        verdict = PostVerdict.PASSED if report.passed else PostVerdict.FAILED
        reasons = list(report.failure_reasons)
    elif result.status is ResultStatus.SUCCESS and parsed is not None:
        # The script exits 0 only once it has printed its summary: output without one is no
        # report at all, and the parser says why.
        verdict, reasons = PostVerdict.CHECK_ERROR, list(parsed.failure_reasons)
    else:
        verdict, reasons = _not_run_verdict(result.status), [_check_problem(result)]
    drift = compare_with_prep(
        report,
        prep,
        result.ended_at or result.started_at,
        change_number=change_number,
        planned_target=kernel,
        planned_source=source,
    )
    return InstancePost(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        name=target.name,
        verdict=verdict,
        status=result.status,
        reasons=reasons,
        report=report,
        drift=drift,
        command_id=result.command_id,
    )


def post_tally(instances: Sequence[InstancePost]) -> Tally:
    """Passed and not passed, for the store; Windows servers count as neither."""
    passed = sum(i.passed for i in instances)
    failed = sum(not i.passed and i.verdict is not PostVerdict.NOT_APPLICABLE for i in instances)
    return Tally(passed, failed)
