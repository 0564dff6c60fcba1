"""Preflight: what ``linux/window_preflight.sh`` found on each server, and the verdict.

Read-only on the servers. An instance is ``ready`` to patch, ``already_patched`` (it runs the
target: not touched), or ``refused`` with every reason at once:

- its agent is not Online (or SSM does not know it);
- prep staged no kernel on it;
- ``patchme.sh`` is missing, or names another kernel than the one prep recorded;
- the repositories no longer offer the target (and it is not installed);
- ``/boot`` has less free space than one more kernel needs;
- a package-manager lock is held;
- CrowdStrike's ``falcon-kernel-check`` says the sensor does not support the target;
- an earlier window run of this change already rebooted it once without reaching the target;
- it runs a kernel newer than the target (unless newer kernels are accepted: then it is
  already patched, with a note).

Facts that cannot be told (no ``falcon-kernel-check``, no way to ask for the dpkg lock) are
notes, not refusals.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from flows.common.remote_scripts import load_script, render_script
from flows.common.text import clean_output, first_line
from flows.linux_patching.kernels import (
    KernelComparison,
    compare_kernels,
    newer_than_staged,
    normalize_kernel,
)
from flows.linux_patching.prep_record import PrepRecord
from providers.base import ResultStatus, ScriptResult, Target

PREFLIGHT_SCRIPT = "linux/window_preflight.sh"
BEGIN = "----- CLOUDOPS WINDOW PREFLIGHT BEGIN -----"
END = "----- CLOUDOPS WINDOW PREFLIGHT END -----"
VERSION = "1"


class PreflightVerdict(StrEnum):
    READY = "ready"
    ALREADY_PATCHED = "already_patched"
    REFUSED = "refused"


class PreflightFacts(BaseModel):
    """What the preflight script printed about one server."""

    hostname: str | None = None
    kernel_running: str | None = None
    boot_id: str | None = None
    patchme: str = Field(
        default="unknown", description="present, missing, unreadable or a symbolic link"
    )
    patchme_kernel: str | None = None
    pkg_manager: str | None = None
    target_installed: str = "unknown"
    target_offered: str = "unknown"
    boot_free_kb: int | None = None
    boot_needed_kb: int | None = None
    pkg_lock: str = "unknown"
    pkg_lock_detail: str = ""
    falcon_kernel_check: str = "unknown"
    falcon_kernel_check_output: str = ""
    window_reboots: int = 0


class InstancePreflight(BaseModel):
    """One instance after preflight."""

    instance_id: str
    account_id: str = ""
    region: str = ""
    name: str | None = None
    group: str = Field(default="unknown", description="its kernel group, from prep")
    staged_kernel: str | None = Field(default=None, description="as prep recorded it")
    verdict: PreflightVerdict
    status: ResultStatus = Field(description="of the preflight command, or why it was not sent")
    reasons: list[str] = Field(default_factory=list, description="why it is refused")
    notes: list[str] = Field(default_factory=list)
    facts: PreflightFacts | None = None

    @property
    def hostname(self) -> str:
        return self.name or (self.facts.hostname if self.facts else None) or ""


def preflight_script(change_number: str, workdir: str) -> str:
    """``window_preflight.sh`` with its quoted parameters."""
    return render_script(
        load_script(PREFLIGHT_SCRIPT), {"CHANGE_NUMBER": change_number, "WORKDIR": workdir}
    )


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 19 else None


def parse_preflight(stdout: str) -> PreflightFacts | None:
    """The facts of the last complete preflight block in ``stdout``, or None."""
    lines = [line.strip() for line in clean_output(stdout).splitlines()]
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    if not begins or END not in lines[begins[-1] :]:
        return None
    block = lines[begins[-1] + 1 : lines.index(END, begins[-1])]
    values = dict(line.partition("=")[::2] for line in block if "=" in line)
    if values.get("PREFLIGHT_VERSION") != VERSION:
        return None

    def text(key: str) -> str | None:
        value = values.get(key, "")
        return value if value and value != "unknown" else None

    return PreflightFacts(
        hostname=text("HOSTNAME"),
        kernel_running=text("KERNEL_RUNNING"),
        boot_id=text("BOOT_ID"),
        patchme=values.get("PATCHME", "unknown"),
        patchme_kernel=text("PATCHME_KERNEL"),
        pkg_manager=text("PKG_MANAGER"),
        target_installed=values.get("TARGET_INSTALLED", "unknown"),
        target_offered=values.get("TARGET_OFFERED", "unknown"),
        boot_free_kb=_number(values.get("BOOT_FREE_KB")),
        boot_needed_kb=_number(values.get("BOOT_NEEDED_KB")),
        pkg_lock=values.get("PKG_LOCK", "unknown"),
        pkg_lock_detail=values.get("PKG_LOCK_DETAIL", ""),
        falcon_kernel_check=values.get("FALCON_KERNEL_CHECK", "unknown"),
        falcon_kernel_check_output=values.get("FALCON_KERNEL_CHECK_OUTPUT", ""),
        window_reboots=_number(values.get("WINDOW_REBOOTS")) or 0,
    )


def _not_run_reason(result: ScriptResult) -> str:
    if result.status in (ResultStatus.OFFLINE, ResultStatus.NOT_MANAGED):
        return f"not reachable: {result.error or result.status.value}"
    if result.status is ResultStatus.FAILED:
        detail = first_line(result.stderr) or result.error or "no message"
        return f"the preflight check failed (exit {result.exit_code}: {detail})"
    return f"the preflight check did not run: {result.error or result.status.value}"


def _target_reasons(facts: PreflightFacts, staged: str, workdir_change: str) -> list[str]:
    """Why the staged target cannot be installed as it stands."""
    if facts.patchme != "present":
        return [
            f"patchme.sh is {facts.patchme} at {workdir_change}/patchme.sh: stage the kernel "
            "again with the prep flow"
        ]
    if facts.patchme_kernel is None:
        return [f"{workdir_change}/patchme.sh has no usable newkernel= line"]
    if normalize_kernel(facts.patchme_kernel) != normalize_kernel(staged):
        return [
            f"patchme.sh names {facts.patchme_kernel} but prep staged {staged}: someone changed "
            "it since prep; stage again so that both agree"
        ]
    return []


def _install_reasons(facts: PreflightFacts, target: str) -> tuple[list[str], list[str]]:
    """Reasons the install would fail here, and notes on what could not be told."""
    reasons: list[str] = []
    notes: list[str] = []
    if facts.target_installed != "yes" and facts.target_offered == "no":
        reasons.append(
            f"kernel {target} is no longer offered by this server's repositories: "
            "check them, or stage a kernel they offer"
        )
    elif facts.target_installed != "yes" and facts.target_offered != "yes":
        notes.append(f"could not tell whether the repositories offer {target}")
    if facts.boot_free_kb is not None and facts.boot_needed_kb is not None:
        if facts.boot_free_kb < facts.boot_needed_kb:
            reasons.append(
                f"/boot has {facts.boot_free_kb // 1024} MB free, one more kernel needs about "
                f"{facts.boot_needed_kb // 1024} MB: remove an old kernel first"
            )
    else:
        notes.append("free space in /boot unknown")
    if facts.pkg_lock == "held":
        reasons.append(
            f"a package-manager lock is held ({facts.pkg_lock_detail or 'by another process'}): "
            "let the other package job finish first"
        )
    elif facts.pkg_lock != "free":
        notes.append(f"package-manager lock state unknown ({facts.pkg_lock_detail or 'not asked'})")
    if facts.falcon_kernel_check == "unsupported":
        said = facts.falcon_kernel_check_output.strip()
        reasons.append(
            f"CrowdStrike's falcon-kernel-check says the sensor does not support {target}"
            + (f" ({said})" if said else "")
            + ": update the sensor or stage a supported kernel"
        )
    elif facts.falcon_kernel_check == "absent":
        notes.append("CrowdStrike support of the target unknown: no falcon-kernel-check here")
    elif facts.falcon_kernel_check != "supported":
        notes.append("CrowdStrike support of the target unknown: falcon-kernel-check was unclear")
    return reasons, notes


def judge_preflight(
    target: Target,
    result: ScriptResult,
    prep: PrepRecord | None,
    *,
    group: str,
    change_number: str,
    workdir: str,
    not_staged: str | None,
    accept_newer_kernel: bool,
) -> InstancePreflight:
    """The preflight verdict on one instance; ``not_staged`` is why prep left it no kernel."""
    staged = prep.staged_kernel if prep is not None else None
    facts = parse_preflight(result.stdout) if result.status.reached else None
    verdict = PreflightVerdict.REFUSED
    reasons: list[str] = []
    notes: list[str] = []
    if not_staged is not None or staged is None:
        reasons.append(not_staged or "prep staged no kernel on it")
    elif not result.status.is_success:
        reasons.append(_not_run_reason(result))
    elif facts is None:
        reasons.append("the preflight check printed no summary: read its output on the instance")
    else:
        reasons = _target_reasons(facts, staged, f"{workdir}/{change_number}")
        if not reasons:
            verdict, reasons, notes = _judge_target(facts, staged, accept_newer_kernel)
    return InstancePreflight(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        name=target.name or (facts.hostname if facts else None),
        group=group,
        staged_kernel=staged,
        verdict=verdict,
        status=result.status,
        reasons=reasons,
        notes=notes,
        facts=facts,
    )


def _judge_target(
    facts: PreflightFacts, staged: str, accept_newer: bool
) -> tuple[PreflightVerdict, list[str], list[str]]:
    running = facts.kernel_running
    if running is not None:
        comparison = compare_kernels(running, staged)
        if comparison is KernelComparison.SAME:
            return PreflightVerdict.ALREADY_PATCHED, [], [f"already runs {staged}: not touched"]
        if comparison is KernelComparison.NEWER:
            newer = f"runs a kernel {newer_than_staged(running, staged)}"
            if accept_newer:
                return (
                    PreflightVerdict.ALREADY_PATCHED,
                    [],
                    [f"{newer}: accepted (accept_newer_kernel), not touched"],
                )
            return (
                PreflightVerdict.REFUSED,
                [
                    f"{newer}: installing {staged} would go back; pass accept_newer_kernel to "
                    "accept it"
                ],
                [],
            )
    if facts.window_reboots > 0:
        return (
            PreflightVerdict.REFUSED,
            [
                "an earlier window run of this change already rebooted it once and it runs "
                f"{running or 'an unknown kernel'}, not {staged}: one reboot per change, look at "
                "its boot entries by hand"
            ],
            [],
        )
    reasons, notes = _install_reasons(facts, staged)
    if running is None:
        notes.append("running kernel unknown")
    verdict = PreflightVerdict.REFUSED if reasons else PreflightVerdict.READY
    return verdict, reasons, notes
