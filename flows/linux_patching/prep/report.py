"""The prep flow's reports: the tables a person reads in the Prefect UI and the two markdown
files of the runbook.

``qc_results_<change>_<stamp>.md`` tells every step of the run (intake, connectivity, QC per
instance with failure reasons, kernel groups, staging). ``qc_final_report_<change>_<stamp>.md``
holds, per instance, the QC report and the ``patchme.sh`` read back from the instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flows.common.reporting import instance_label, markdown_table
from flows.common.text import code_span, fenced, markdown_text, passed_failed, yes_no
from flows.linux_patching.prep.kernel_choice import offer_counts
from flows.linux_patching.prep.qc import InstanceQc, QcVerdict
from flows.linux_patching.prep.result import PrepResult
from flows.linux_patching.prep.staging import InstancePrepFiles
from flows.linux_patching.prep_record import PrepStep


def _name(instance: InstanceQc) -> str:
    """The hostname: from the change file, else the one its QC report printed."""
    report = instance.report
    return instance.name or (report.hostname if report else None) or ""


def qc_rows(instances: Iterable[InstanceQc], groups: dict[str, str]) -> list[dict[str, Any]]:
    """One row per instance: verdict, what QC found, why it did not pass."""
    rows = []
    for i in instances:
        report = i.report
        rows.append(
            {
                "instance": i.instance_id,
                "name": _name(i),
                "verdict": i.verdict.value,
                "reasons": "; ".join(i.reasons),
                "account": i.account_id,
                "region": i.region,
                "distro": (report.distro or "") if report else "",
                "kernel": (report.kernel or "") if report else "",
                "crowdstrike running": yes_no(report.crowdstrike_running) if report else "",
                "repositories": passed_failed(report.repos_passed) if report else "",
                "disk": passed_failed(report.disk_passed) if report else "",
                "kernel updates": len(report.available_kernels) if report else "",
                "group": groups.get(i.instance_id, ""),
            }
        )
    return rows


def group_rows(result: PrepResult) -> list[dict[str, Any]]:
    """One row per kernel group: its instances, its kernels, what was chosen and staged."""
    decisions = {d.group: d for d in result.decisions}
    rows = []
    for group in result.groups:
        decision = decisions.get(group.name)
        staged = [s for s in result.staged if s.group == group.name]
        rows.append(
            {
                "group": group.name,
                "instances": len(group.instance_ids),
                "instance ids": ", ".join(group.instance_ids),
                "available kernels (oldest first), hosts offering each": offer_counts(group)
                or "no kernel updates",
                "chosen kernel": (decision.kernel or "") if decision else "",
                "chosen by": (decision.source.value if decision.source else "") if decision else "",
                "staged": f"{sum(s.staged for s in staged)}/{len(staged)}" if staged else "",
                "not offered": ", ".join(s.instance_id for s in staged if s.not_offered),
                "not staged because": (decision.reason or "") if decision else "",
            }
        )
    return rows


def staging_rows(result: PrepResult) -> list[dict[str, Any]]:
    return [
        {
            "instance": s.instance_id,
            "account": s.account_id,
            "region": s.region,
            "group": s.group,
            "kernel": s.kernel,
            "outcome": s.outcome,
            "status": s.status.value,
            "newkernel in patchme.sh": s.staged_kernel or "",
            "error": s.error or "",
            "command": s.command_id or "",
        }
        for s in result.staged
    ]


def group_of_instances(result: PrepResult) -> dict[str, str]:
    return {iid: g.name for g in result.groups for iid in g.instance_ids}


def _intake(result: PrepResult, run_name: str) -> list[str]:
    counts = ", ".join(f"{n} {verdict}" for verdict, n in result.verdict_counts().items())
    return [
        f"# Linux patching QC prep: {markdown_text(result.change_number)}",
        "",
        "## Intake",
        "",
        f"- flow run: {code_span(run_name)}",
        f"- provider: {code_span(result.provider)}",
        f"- instances: {len(result.instances)} ({counts or 'none'})",
        f"- steps: {', '.join(s.value for s in result.steps)}",
        f"- QC engine: {code_span(result.qc_engine.value)}; change folder on each server: "
        f"{code_span(f'{result.workdir}/{result.change_number}')}",
        f"- CrowdStrike required to pass: {'yes' if result.require_crowdstrike else 'no'}",
        "",
    ]


def _connectivity(result: PrepResult) -> list[str]:
    left_out = [
        {
            "instance": i.instance_id,
            "account": i.account_id,
            "region": i.region,
            "verdict": i.verdict.value,
            "status": i.status.value,
            "reason": "; ".join(i.reasons),
        }
        for i in result.instances
        if i.verdict in (QcVerdict.UNREACHABLE, QcVerdict.NOT_APPLICABLE)
    ]
    reached = sum(
        i.verdict not in (QcVerdict.UNREACHABLE, QcVerdict.NOT_APPLICABLE) for i in result.instances
    )
    lines = [
        "## Connectivity check",
        "",
        f"{reached} Linux instance(s) reachable through the {code_span(result.provider)} provider; "
        f"{len(left_out)} left out:",
        "",
    ]
    return [*lines, markdown_table(left_out)]


def _qc(result: PrepResult) -> list[str]:
    groups = group_of_instances(result)
    failed = [i for i in result.instances if i.verdict in (QcVerdict.FAILED, QcVerdict.QC_ERROR)]
    lines = ["## Initial QC", ""]
    if failed:
        lines += ["### Did not pass", ""]
        lines += [
            f"- {instance_label(i.instance_id, _name(i), i.account_id, i.region)} "
            f"({i.verdict.value}): " + markdown_text("; ".join(i.reasons))
            for i in failed
        ]
        lines.append("")
    lines += ["### Every instance", "", markdown_table(qc_rows(result.instances, groups))]
    return lines


def _groups(result: PrepResult) -> list[str]:
    return ["## Kernel groups", "", markdown_table(group_rows(result))]


def _staging(result: PrepResult) -> list[str]:
    lines = ["## Kernel staging", ""]
    if result.staging_refused:
        return [*lines, f"**Refused, nothing staged:** {markdown_text(result.staging_refused)}", ""]
    if not result.decisions:
        return [*lines, "No kernel group passed QC: nothing to stage.", ""]
    unstaged = [d for d in result.decisions if d.kernel is None]
    lines += [
        f"- {code_span(d.group)}: not staged: {markdown_text(d.reason or '')}" for d in unstaged
    ]
    if unstaged:
        lines.append("")
    lines += [
        "Staging writes `patchme.sh` in each instance's change folder; it installs nothing and "
        "reboots nothing.",
        "",
        markdown_table(staging_rows(result)),
    ]
    return lines


def qc_results_markdown(result: PrepResult, run_name: str) -> str:
    """The ``qc_results`` report: every step of the run, as far as it went."""
    lines = _intake(result, run_name) + _connectivity(result) + _qc(result) + _groups(result)
    if PrepStep.STAGE_KERNELS in result.steps:
        lines += _staging(result)
    return "\n".join(lines)


def _instance_section(instance: InstanceQc, files: InstancePrepFiles | None) -> list[str]:
    # The name (a tag or a change file's column) is one line of words, whatever it holds.
    name = markdown_text(instance.name or "")
    title = markdown_text(instance.instance_id) + (f" ({name})" if name else "")
    where = "/".join(p for p in (instance.account_id, instance.region) if p)
    lines = [f"## {title}", "", f"- account/region: {markdown_text(where or 'n/a')}"]
    lines.append(f"- QC verdict: **{instance.verdict.value}**")
    if instance.reasons:
        lines.append("- reasons: " + markdown_text("; ".join(instance.reasons)))
    lines.append("")
    if not instance.reached:
        return [*lines, "Not reached: no QC report and no patch script.", ""]
    if files is None or files.files is None:
        error = files.error if files else "the prep files were not collected"
        return [*lines, f"Prep files not read: {markdown_text(error or '')}", ""]
    collected = files.files
    lines += ["### QC report", ""]
    lines.append(fenced(collected.qc_report) if collected.qc_report is not None else "_missing_\n")
    lines += ["### patchme.sh", ""]
    if collected.patchme is not None:
        lines.append(fenced(collected.patchme, "bash"))
    else:
        lines.append("_not staged: no patchme.sh in the change folder_\n")
    if collected.truncated:
        lines.append(
            f"Cut short on the instance: {markdown_text(', '.join(collected.truncated))}\n"
        )
    return lines


def final_report_markdown(result: PrepResult) -> str:
    """The ``qc_final_report``: per instance, its QC report and patch script as read back."""
    files = {f.instance_id: f for f in result.collected}
    lines = [f"# QC final report: {markdown_text(result.change_number)}", ""]
    for instance in result.instances:
        lines += _instance_section(instance, files.get(instance.instance_id))
    return "\n".join(lines)
