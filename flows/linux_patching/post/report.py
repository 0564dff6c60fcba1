"""The post-patching run as a person reads it: passed, failed and drift tables, and the
``qc_post_report`` markdown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flows.common.reporting import instance_label, markdown_table
from flows.common.text import code_span, markdown_text, yes_no
from flows.linux_patching.drift import NO_PREP_RECORD, InstanceDrift
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_check import AGENT_LABELS, AgentState
from flows.linux_patching.post_verdict import InstancePost, PostVerdict

# --- Tables --------------------------------------------------------------------------------------


def _agent(state: AgentState | None) -> str:
    return {
        None: "",
        AgentState.RUNNING: "running",
        AgentState.STOPPED: "installed, not running",
        AgentState.NOT_INSTALLED: "not installed",
        AgentState.UNKNOWN: "unknown",
    }[state]


def _crowdstrike_before(drift: InstanceDrift) -> str:
    if not drift.prep_record:
        return NO_PREP_RECORD
    if drift.crowdstrike_before is None:
        return "unknown"
    return "running" if drift.crowdstrike_before else "not running"


def _name(instance: InstancePost) -> str:
    return instance.name or (instance.report.hostname if instance.report else None) or ""


def _target(drift: InstanceDrift) -> str:
    return drift.kernel_target or "none known"


def passed_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance that passed."""
    return [
        {
            "instance": i.instance_id,
            "name": _name(i),
            "account": i.account_id,
            "region": i.region,
            "running kernel": i.drift.kernel_after or "",
            "target kernel": _target(i.drift),
            "target from": i.drift.kernel_target_source.value,
            "rebooted": yes_no(i.drift.rebooted),
            "notes": "; ".join((i.report.notes if i.report else []) + i.drift.notes),
        }
        for i in instances
        if i.passed
    ]


def failed_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance that did not pass, with the reasons."""
    return [
        {
            "instance": i.instance_id,
            "name": _name(i),
            "verdict": i.verdict.value,
            "reasons": "; ".join(i.reasons),
            "running kernel": i.drift.kernel_after or "",
            "target kernel": _target(i.drift),
            "account": i.account_id,
            "region": i.region,
            "status": i.status.value,
            "command": i.command_id or "",
        }
        for i in instances
        if not i.passed
    ]


def drift_rows(instances: Iterable[InstancePost]) -> list[dict[str, Any]]:
    """One row per instance: prep time beside now."""
    rows = []
    for i in instances:
        drift = i.drift
        row: dict[str, Any] = {
            "instance": i.instance_id,
            "name": _name(i),
            "verdict": i.verdict.value,
            "QC before": drift.qc_before,
            "kernel before": drift.kernel_before or "",
            "kernel after": drift.kernel_after or "",
            "target kernel": _target(drift),
            "target from": drift.kernel_target_source.value,
            "kernel changed": yes_no(drift.kernel_changed),
            "rebooted": yes_no(drift.rebooted),
            "CrowdStrike before": _crowdstrike_before(drift),
        }
        for unit, label in AGENT_LABELS.items():
            row[f"{label} after"] = _agent(drift.agents_after.get(unit))
        rows.append(row)
    return rows


# --- Markdown ------------------------------------------------------------------------------------


def _counts(result: PostResult) -> str:
    return ", ".join(f"{n} {v}" for v, n in result.verdict_counts().items()) or "none"


def _needs_attention(result: PostResult) -> list[str]:
    lines = []
    for i in result.not_passed:
        if not i.verdict.is_failure:
            continue
        who = instance_label(i.instance_id, _name(i), i.account_id, i.region)
        lines.append(f"- {who} ({i.verdict.value}): " + markdown_text("; ".join(i.reasons)))
    if not lines:
        return []
    return ["## Needs attention", "", *lines, ""]


def _left_unpatched(result: PostResult) -> list[str]:
    lines = [
        f"- `{i.instance_id}`: " + "; ".join(i.reasons)
        for i in result.instances
        if i.verdict is PostVerdict.NOT_PATCHED_PREP_FAILED
    ]
    if not lines:
        return []
    return [
        "## Not patched on purpose",
        "",
        "Their prep QC did not pass, so no kernel was staged: no post failure.",
        "",
        *lines,
        "",
    ]


def _findings(result: PostResult) -> list[str]:
    lines = []
    for i in result.instances:
        notes = (i.report.notes if i.report else []) + i.drift.notes
        if notes:
            who = instance_label(i.instance_id, _name(i), i.account_id, i.region)
            lines.append(f"- {who}: " + markdown_text("; ".join(notes)))
    if not lines:
        return []
    return ["## Informational findings", "", "They do not fail a server.", "", *lines, ""]


def post_report_markdown(result: PostResult) -> str:
    """The ``qc_post_report``: verdicts, what needs attention, drift since prep, every table."""
    without_prep = [i.instance_id for i in result.instances if not i.drift.prep_record]
    not_applicable = [
        i.instance_id for i in result.instances if i.verdict is PostVerdict.NOT_APPLICABLE
    ]
    lines = [
        f"# Linux post-patching QC: {markdown_text(result.change_number)}",
        "",
        f"- flow run: {code_span(result.flow_run)}",
        f"- provider: {code_span(result.provider)}",
        f"- instances: {len(result.instances)} ({_counts(result)})",
        f"- change folder on each server: {code_span(f'{result.workdir}/{result.change_number}')}",
        "- target kernel: `patchme.sh` on the server, else the kernel the prep run staged, "
        f"else the parameter ({markdown_text(result.target_kernel or 'not given')})",
        "- a server fails on a kernel mismatch, on a required agent installed but not running, "
        "or on a required agent present at prep QC and gone or stopped now; the other findings "
        "are informational",
    ]
    if without_prep:
        lines.append(f"- {NO_PREP_RECORD} for: {markdown_text(', '.join(without_prep))}")
    if not_applicable:
        lines.append(f"- not applicable (Windows): {markdown_text(', '.join(not_applicable))}")
    lines.append("")
    lines += _needs_attention(result)
    lines += _left_unpatched(result)
    lines += ["## Kernel and agents since prep", "", markdown_table(drift_rows(result.instances))]
    lines += ["## Passed", "", markdown_table(passed_rows(result.instances))]
    lines += ["## Did not pass", "", markdown_table(failed_rows(result.instances))]
    lines += _findings(result)
    return "\n".join(lines)
