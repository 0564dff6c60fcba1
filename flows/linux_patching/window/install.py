"""Install and reboot: what ``linux/window_install.sh`` reported for each server of a wave.

The script runs through the SSM agent's reboot protocol (it exits 194, the agent reboots and
runs it again), so the command ends only once the server is back; its output is that of the
run after the boot. An instance is back online when its command ended and its boot id is new.

Judged here, before the post checks:

- back on the staged kernel -> goes on to the post checks;
- back on a kernel newer than staged -> the post checks with a note when newer kernels are
  accepted, otherwise ``wrong_kernel`` "newer than staged (X > Y)";
- back on another kernel -> ``wrong_kernel`` naming what it booted;
- the install failed (nothing rebooted) -> ``install_failed``;
- the command did not end in time and the agent is away -> ``reboot_timed_out``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.common.remote_scripts import load_script, render_script
from flows.common.text import clean_output, first_line
from flows.linux_patching.kernels import KernelComparison, compare_kernels, newer_than_staged
from flows.linux_patching.window.result import FinalStatus
from providers.base import ResultStatus, ScriptResult

INSTALL_SCRIPT = "linux/window_install.sh"
BEGIN = "----- CLOUDOPS WINDOW INSTALL BEGIN -----"
END = "----- CLOUDOPS WINDOW INSTALL END -----"


class InstallState(StrEnum):
    """The script's own account of how it ended (its STATE line)."""

    ALREADY_RUNNING_TARGET = "already_running_target"
    REBOOTING = "rebooting"
    BOOTED_TARGET = "booted_target"
    BOOTED_OTHER = "booted_other"
    INSTALL_FAILED = "install_failed"
    REBOOT_PENDING = "reboot_pending"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class InstallFacts(BaseModel):
    """The summary block the install script printed on its last run."""

    state: InstallState = InstallState.UNKNOWN
    target: str | None = None
    kernel_before: str | None = None
    kernel_running: str | None = None
    boot_id_before: str | None = None
    boot_id: str | None = None
    reboots: int = 0
    pkg_manager: str | None = None
    default_entry: str | None = None
    reason: str = ""


class Installed(StrEnum):
    """How the install step left an instance, before its post checks."""

    BACK = "back"  # rebooted and back on the target (or a newer kernel that is accepted)
    ALREADY = "already"  # already ran the target: nothing installed, no reboot
    FAILED = "failed"  # a final failure; ``failure`` says which


class InstallOutcome(BaseModel):
    """The install step's verdict on one instance."""

    installed: Installed
    failure: FinalStatus | None = None
    reasons: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    facts: InstallFacts | None = None


def install_script(change_number: str, workdir: str, staged_kernels: Iterable[str]) -> str:
    """``window_install.sh`` with its quoted parameters: the kernels this wave expects, so a
    ``patchme.sh`` changed since the preflight is refused before anything is installed."""
    return render_script(
        load_script(INSTALL_SCRIPT),
        {
            "CHANGE_NUMBER": change_number,
            "WORKDIR": workdir,
            "STAGED_KERNELS": ",".join(sorted(set(staged_kernels))),
        },
    )


def parse_install(stdout: str) -> InstallFacts | None:
    """The last complete summary block in ``stdout``, or None."""
    lines = [line.strip() for line in clean_output(stdout).splitlines()]
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    if not begins or END not in lines[begins[-1] :]:
        return None
    block = lines[begins[-1] + 1 : lines.index(END, begins[-1])]
    values = dict(line.partition("=")[::2] for line in block if "=" in line)
    if values.get("INSTALL_VERSION") != "1":
        return None
    try:
        state = InstallState(values.get("STATE", ""))
    except ValueError:
        state = InstallState.UNKNOWN
    reboots = values.get("REBOOTS", "0")
    return InstallFacts(
        state=state,
        target=values.get("TARGET") or None,
        kernel_before=values.get("KERNEL_BEFORE") or None,
        kernel_running=values.get("KERNEL_RUNNING") or None,
        boot_id_before=values.get("BOOT_ID_BEFORE") or None,
        boot_id=values.get("BOOT_ID") or None,
        reboots=int(reboots) if reboots.isdigit() and len(reboots) < 6 else 0,
        pkg_manager=values.get("PKG_MANAGER") or None,
        default_entry=values.get("DEFAULT_ENTRY") or None,
        reason=values.get("REASON", ""),
    )


def _failed(failure: FinalStatus, reason: str, facts: InstallFacts | None) -> InstallOutcome:
    return InstallOutcome(
        installed=Installed.FAILED, failure=failure, reasons=[reason], facts=facts
    )


def _not_back(result: ScriptResult, agent_online: bool | None, reboot_timeout: int) -> str:
    if agent_online is False:
        return (
            f"reboot_timed_out: its SSM agent did not come back within {reboot_timeout} s of the "
            "reboot (still not Online): check the console output and the agent (SSM agent issue "
            "320: the agent does not start after a patch reboot)"
        )
    return f"the install did not finish in time: {result.error or result.status.value}"


def judge_install(
    result: ScriptResult,
    staged: str,
    *,
    accept_newer_kernel: bool,
    agent_online: bool | None,
    reboot_timeout_seconds: int,
) -> InstallOutcome:
    """The install step's verdict on one instance.

    ``agent_online`` is what SSM says of its agent now (None when not asked): it tells a reboot
    that never came back from an install that ran too long.
    """
    facts = parse_install(result.stdout) if result.status.reached else None
    if result.status is ResultStatus.TIMED_OUT:
        failure = (
            FinalStatus.REBOOT_TIMED_OUT if agent_online is False else FinalStatus.INSTALL_FAILED
        )
        return _failed(failure, _not_back(result, agent_online, reboot_timeout_seconds), facts)
    if not result.status.reached:
        return _failed(
            FinalStatus.INSTALL_FAILED,
            f"the install was not run: {result.error or result.status.value}",
            facts,
        )
    if facts is None:
        detail = first_line(result.stderr) or result.error or "no summary printed"
        return _failed(FinalStatus.INSTALL_FAILED, f"the install script failed: {detail}", facts)
    if facts.target and facts.target != staged:
        return _failed(
            FinalStatus.INSTALL_FAILED,
            f"the install used {facts.target}, but prep staged {staged}",
            facts,
        )
    if facts.state is InstallState.ALREADY_RUNNING_TARGET:
        return InstallOutcome(installed=Installed.ALREADY, facts=facts)
    if facts.state in (InstallState.BOOTED_TARGET, InstallState.BOOTED_OTHER):
        return _judge_boot(facts, staged, accept_newer_kernel)
    reason = facts.reason or f"the install ended {facts.state.value}"
    return _failed(FinalStatus.INSTALL_FAILED, reason, facts)


def _judge_boot(facts: InstallFacts, staged: str, accept_newer: bool) -> InstallOutcome:
    if not facts.boot_id or facts.boot_id == facts.boot_id_before:
        return _failed(
            FinalStatus.INSTALL_FAILED,
            "the command ended but no new boot id was seen: the server did not reboot",
            facts,
        )
    running = facts.kernel_running
    if running is None:
        return _failed(FinalStatus.WRONG_KERNEL, "it came back, running an unknown kernel", facts)
    comparison = compare_kernels(running, staged)
    if comparison is KernelComparison.SAME:
        return InstallOutcome(installed=Installed.BACK, facts=facts)
    if comparison is KernelComparison.NEWER:
        newer = f"booted a kernel {newer_than_staged(running, staged)}"
        if accept_newer:
            return InstallOutcome(
                installed=Installed.BACK,
                notes=[f"{newer}: accepted (accept_newer_kernel)"],
                facts=facts,
            )
        return _failed(
            FinalStatus.WRONG_KERNEL,
            f"{newer}; pass accept_newer_kernel to accept a later build",
            facts,
        )
    return _failed(
        FinalStatus.WRONG_KERNEL,
        f"booted {running} instead of {staged} (the boot fell back or another entry is the "
        "default); not rebooted again: one reboot per change",
        facts,
    )
