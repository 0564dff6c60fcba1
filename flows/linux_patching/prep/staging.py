"""Kernel staging and the collection of prep files, as the prep flow judges them per instance.

Staging sends ``linux/stage_kernel.sh`` to the instances of one kernel group; it writes
``<workdir>/<CHANGE>/patchme.sh`` and prints it back, so the flow reads the ``newkernel="..."``
line that was really written instead of trusting the exit code alone. Collection sends
``linux/collect_prep_reports.sh``, which prints the QC report and ``patchme.sh`` left on the
instance for the final report.
"""

from __future__ import annotations

from pydantic import BaseModel

from flows.common.remote_scripts import load_script, render_script
from flows.common.text import first_line
from flows.linux_patching.kernels import read_staged_kernel
from flows.linux_patching.prep_record import StagedInstance
from flows.linux_patching.qc_report import CollectedPrepFiles, parse_collected_prep_files
from providers.base import ResultStatus, ScriptResult, Target

WINDOW_INSTALL_SCRIPT = "linux/window_install.sh"
_PATCHME_BEGIN = "----- BEGIN patchme.sh -----"
_PATCHME_END = "----- END patchme.sh -----"


class InstancePrepFiles(BaseModel):
    """The prep files read back from one instance for the final report."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    status: ResultStatus
    files: CollectedPrepFiles | None = None
    error: str | None = None


def stage_script(change_number: str, workdir: str, kernel: str) -> str:
    """``linux/stage_kernel.sh`` with its quoted parameters; the ``patchme.sh`` it writes runs
    ``linux/window_install.sh`` (the SSM agent's reboot protocol, one reboot per change)."""
    return render_script(
        load_script("linux/stage_kernel.sh"),
        {
            "CHANGE_NUMBER": change_number,
            "WORKDIR": workdir,
            "NEW_KERNEL": kernel,
            "PATCHME_BODY": load_script(WINDOW_INSTALL_SCRIPT),
        },
    )


def collect_script(change_number: str, workdir: str) -> str:
    """``linux/collect_prep_reports.sh`` with its quoted parameters."""
    return render_script(
        load_script("linux/collect_prep_reports.sh"),
        {"CHANGE_NUMBER": change_number, "WORKDIR": workdir},
    )


def _printed_patchme(stdout: str) -> str | None:
    _, found, rest = stdout.partition(_PATCHME_BEGIN)
    if not found:
        return None
    body, _, _ = rest.partition(_PATCHME_END)
    return body.lstrip("\n")


def _problem(result: ScriptResult) -> str:
    detail = result.error or first_line(result.stderr)
    if result.status is ResultStatus.FAILED:
        return f"stage_kernel.sh exited with code {result.exit_code}: {detail or 'no message'}"
    return detail or f"staging ended {result.status.value}"


def judge_staging(result: ScriptResult, group: str, kernel: str) -> StagedInstance:
    """What staging ``kernel`` did on one instance, from its command's result."""
    patchme = _printed_patchme(result.stdout) if result.status.is_success else None
    staged_kernel = read_staged_kernel(patchme) if patchme is not None else None
    error = None
    if not result.status.is_success:
        error = _problem(result)
    elif staged_kernel != kernel:
        error = (
            f"patchme.sh was written but its newkernel line says {staged_kernel!r}, not "
            f"{kernel!r}; read {result.instance_id}'s change folder and stage again"
        )
    return StagedInstance(
        instance_id=result.instance_id,
        account_id=result.account_id,
        region=result.region,
        group=group,
        kernel=kernel,
        status=result.status,
        staged_kernel=staged_kernel,
        command_id=result.command_id,
        error=error,
    )


def not_offered(
    target: Target, group: str, kernel: str, offered: list[str]
) -> tuple[ScriptResult, StagedInstance]:
    """An instance of ``group`` whose own QC did not list ``kernel``: nothing is sent to it
    (its repositories would not install it, and the post check would later report a kernel it
    could never run); its result and staging record say which kernels it does offer."""
    error = (
        f"not_offered: kernel {kernel}, chosen for {group}, is not among the kernels this "
        f"instance's repositories offer ({', '.join(offered) or 'no kernel updates'}); "
        "nothing staged here: stage one of those on it, or fix its repositories and run QC again"
    )
    result = ScriptResult.without_running(target, ResultStatus.SKIPPED, error)
    return result, StagedInstance(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        group=group,
        kernel=kernel,
        status=ResultStatus.SKIPPED,
        error=error,
        not_offered=True,
        offered_kernels=list(offered),
    )


def judge_collection(result: ScriptResult) -> InstancePrepFiles:
    """The prep files one instance printed, or why they could not be read."""
    files = parse_collected_prep_files(result.stdout) if result.status.is_success else None
    error = None if result.status.is_success else _collect_problem(result)
    return InstancePrepFiles(
        instance_id=result.instance_id,
        account_id=result.account_id,
        region=result.region,
        status=result.status,
        files=files,
        error=error,
    )


def _collect_problem(result: ScriptResult) -> str:
    detail = result.error or first_line(result.stderr)
    return f"the prep files could not be read ({result.status.value}): {detail or 'no message'}"
