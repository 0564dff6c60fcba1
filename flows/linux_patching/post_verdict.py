"""The post-patching check of a set of servers and its verdict per server.

The post flow runs it on a whole change after the patch window; the patch window runs it on
each wave before starting the next. Read-only on the servers: ``linux/post_qc.sh`` prints a
machine-readable summary (see :mod:`flows.linux_patching.post_check`) that is judged here and
set beside the prep record (:mod:`flows.linux_patching.drift`).

The target kernel comes, in this order, from the ``newkernel`` line of
``<workdir>/<CHANGE>/patchme.sh`` on the server (the script reads it), the kernel the prep run
staged there, or a parameter. A server fails on a kernel mismatch (a kernel newer than staged is
said so, and passes with a note when newer kernels are accepted), on a required agent
(CrowdStrike and BigFix by default) installed but not running, or on a required agent present
at prep QC and gone or stopped now; every other finding is informational. A server whose prep
QC did not pass was left unpatched on purpose: it gets its own verdict,
``not_patched_prep_failed``, and is no post failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from enum import StrEnum

from prefect import get_run_logger
from pydantic import BaseModel, Field

from flows.common.remote_scripts import load_script, render_script
from flows.common.runs import Tally, WorkflowRun
from flows.common.text import first_line
from flows.linux_patching.drift import InstanceDrift, compare_with_prep, lost_agents
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.post_check import (
    REQUIRED_AGENTS,
    KernelTargetSource,
    PostReport,
    parse_post_report,
    stopped_agent_reason,
)
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
    # Prep QC did not pass there, so nothing was staged and the change left it alone on purpose.
    NOT_PATCHED_PREP_FAILED = "not_patched_prep_failed"

    @property
    def is_failure(self) -> bool:
        """Counts as a post failure (and in ``cloudops.post.failed``): everything but passed,
        not applicable and not patched on purpose."""
        return self not in (
            PostVerdict.PASSED,
            PostVerdict.NOT_APPLICABLE,
            PostVerdict.NOT_PATCHED_PREP_FAILED,
        )


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


def _prep_failed_reason(prep: PrepRecord, change_number: str) -> str:
    why = "; ".join(prep.qc_reasons) or "no reason recorded"
    return (
        f"not patched: the prep QC of change {change_number} {prep.qc_before} on this instance "
        f"({why}), so no kernel was staged and the change left it as it was"
    )


def _left_unpatched(target: Target, prep: PrepRecord | None) -> bool:
    """Prep QC did not pass there and prep staged nothing: not patched on purpose."""
    return (
        target.platform is not Platform.WINDOWS
        and prep is not None
        and prep.qc_not_passed
        and not prep.staged_kernel
    )


def _with_lost_agents(reasons: list[str], lost: Mapping[str, str]) -> list[str]:
    """``reasons`` with each lost agent's reason, which says its prep state, in place of the
    plain "installed but not running" one."""
    replaced = {stopped_agent_reason(unit) for unit in lost}
    return [r for r in reasons if r not in replaced] + list(lost.values())


def judge_post(
    target: Target,
    result: ScriptResult,
    prep: PrepRecord | None,
    planned: PlannedTarget,
    change_number: str,
    *,
    accept_newer_kernel: bool = False,
    required_agents: Collection[str] = REQUIRED_AGENTS,
) -> InstancePost:
    """The verdict on one instance from its post check's result, with its drift since prep.

    ``accept_newer_kernel`` passes a kernel newer than the target (with a note);
    ``required_agents`` are the agents (unit names) the change must leave running.
    """
    kernel, source = planned
    parsed: PostReport | None = None
    if result.status.reached:
        parsed = parse_post_report(
            result.stdout,
            target_kernel=kernel,
            target_kernel_source=source,
            accept_newer_kernel=accept_newer_kernel,
            required_agents=required_agents,
        )
    report = parsed if parsed is not None and parsed.summary_found else None
    drift = compare_with_prep(
        report,
        prep,
        result.ended_at or result.started_at,
        change_number=change_number,
        planned_target=kernel,
        planned_source=source,
    )
    reasons: list[str]
    if prep is not None and _left_unpatched(target, prep):
        verdict, reasons = PostVerdict.NOT_PATCHED_PREP_FAILED, [
            _prep_failed_reason(prep, change_number)
        ]
    elif result.status is ResultStatus.SUCCESS and report is not None:
        reasons = _with_lost_agents(
            list(report.failure_reasons), lost_agents(drift, required_agents)
        )
        verdict = PostVerdict.FAILED if reasons else PostVerdict.PASSED
    elif result.status is ResultStatus.SUCCESS and parsed is not None:
        # The script exits 0 only once it has printed its summary: output without one is no
        # report at all, and the parser says why.
        verdict, reasons = PostVerdict.CHECK_ERROR, list(parsed.failure_reasons)
    else:
        verdict, reasons = _not_run_verdict(result.status), [_check_problem(result)]
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
    """Passed and failed, for the store; Windows servers and servers left unpatched by prep
    count as neither."""
    passed = sum(i.passed for i in instances)
    failed = sum(i.verdict.is_failure for i in instances)
    return Tally(passed, failed)
