"""Initial QC of the prep flow: the QC script to send, and the verdict on each instance.

An instance ends the QC step with one verdict: ``passed`` (it can be patched), ``failed``
(its report lists why not), ``qc_error`` (no usable report came back), ``unreachable``
(offline, unknown to SSM, or not reachable with our credentials) or ``not_applicable``
(a Windows server in a Linux change).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from flows.common.remote_scripts import load_script, render_script
from flows.common.text import first_line
from flows.linux_patching.prep.parameters import PrepParameters, QcEngine
from flows.linux_patching.qc_report import QcReport, parse_qc_report
from providers.base import ResultStatus, ScriptResult, Target

# The SSM execution limit is the script's; the QC engine must stop its own slow parts first so
# that a report still comes back. Seconds kept between the two limits:
_REPORT_MARGIN_SECONDS = 60
_REPO_TIMEOUT_MAX_SECONDS = 600


class QcVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    QC_ERROR = "qc_error"
    UNREACHABLE = "unreachable"
    NOT_APPLICABLE = "not_applicable"


class InstanceQc(BaseModel):
    """One instance after the connectivity check and the initial QC."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    name: str | None = None
    verdict: QcVerdict
    status: ResultStatus = Field(description="of the QC command, or why it was not sent")
    reasons: list[str] = Field(default_factory=list, description="why it did not pass")
    report: QcReport | None = None
    command_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is QcVerdict.PASSED

    @property
    def reached(self) -> bool:
        """QC ran on it (whatever the verdict), so it holds prep files to collect."""
        return self.verdict in (QcVerdict.PASSED, QcVerdict.FAILED, QcVerdict.QC_ERROR)


def qc_script(params: PrepParameters, change_number: str) -> str:
    """The QC script of the chosen engine, with its quoted parameter header."""
    common = {"CHANGE_NUMBER": change_number, "WORKDIR": params.workdir}
    inner_limit = str(max(60, params.qc_timeout_seconds - _REPORT_MARGIN_SECONDS))
    if params.qc_engine is QcEngine.LINUX_PATCHER:
        assert params.patcher_url is not None  # checked with the parameters
        values = {
            **common,
            "PATCHER_URL": params.patcher_url,
            "PATCHER_ARGS": params.patcher_args,
            "PATCHER_TIMEOUT_SECONDS": inner_limit,
        }
        if params.patcher_sha256:
            values["PATCHER_SHA256"] = params.patcher_sha256
        return render_script(load_script("linux/linux_patcher_qc.sh"), values)
    values = {
        **common,
        "MIN_VAR_FREE_GB": str(params.min_var_free_gb),
        "REPO_TIMEOUT_SECONDS": str(min(_REPO_TIMEOUT_MAX_SECONDS, int(inner_limit))),
    }
    return render_script(load_script("linux/qc.sh"), values)


NOT_APPLICABLE_REASON = (
    "Windows server: Linux patching QC does not apply; patch it with the Windows job"
)


def not_reached(target: Target, result: ScriptResult) -> InstanceQc:
    """A target the connectivity check left out (offline, not managed, wrong platform...)."""
    verdict = (
        QcVerdict.NOT_APPLICABLE if result.status is ResultStatus.SKIPPED else QcVerdict.UNREACHABLE
    )
    return InstanceQc(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        name=target.name,
        verdict=verdict,
        status=result.status,
        reasons=[result.error or f"not sent: {result.status.value}"],
    )


def _ran_but_failed(result: ScriptResult) -> str:
    detail = first_line(result.stderr) or result.error or "no message"
    return (
        f"the QC script exited with code {result.exit_code} ({detail}); read the command "
        "output on the instance and run QC again"
    )


def judge_qc(target: Target, result: ScriptResult, require_crowdstrike: bool) -> InstanceQc:
    """The verdict on one instance from its QC command's result."""
    base: dict[str, Any] = dict(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        name=target.name,
        status=result.status,
        command_id=result.command_id,
    )
    if result.status in (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED):
        return InstanceQc(
            **base, verdict=QcVerdict.UNREACHABLE, reasons=[result.error or result.status.value]
        )
    if result.status is ResultStatus.SKIPPED:
        return InstanceQc(
            **base, verdict=QcVerdict.NOT_APPLICABLE, reasons=[result.error or "skipped"]
        )
    if not result.status.reached:
        reason = result.error or f"the QC command ended {result.status.value}"
        return InstanceQc(**base, verdict=QcVerdict.QC_ERROR, reasons=[reason])

    report = parse_qc_report(result.stdout, require_crowdstrike=require_crowdstrike)
    if report.hostname is None:
        # No report at all: the script was refused or stopped before printing one.
        reasons = [_ran_but_failed(result)] if result.exit_code else []
        return InstanceQc(
            **base,
            verdict=QcVerdict.QC_ERROR,
            reasons=reasons + report.failure_reasons,
            report=report,
        )
    reasons = list(report.failure_reasons)
    if result.status is ResultStatus.FAILED:
        reasons.append(_ran_but_failed(result))
    return InstanceQc(
        **base,
        verdict=QcVerdict.FAILED if reasons else QcVerdict.PASSED,
        reasons=reasons,
        report=report,
    )
