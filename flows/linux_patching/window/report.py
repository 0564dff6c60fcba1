"""The patch window as a person reads it: per-instance, per-wave and preflight tables, and the
``window_report_<change>_<stamp>.md`` markdown (also the run's summary artifact)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flows.common.reporting import instance_label, markdown_table
from flows.common.text import code_span, markdown_text
from flows.linux_patching.window.preflight import InstancePreflight
from flows.linux_patching.window.result import FinalStatus, InstanceOutcome, WindowResult


def _kernels(outcome: InstanceOutcome) -> str:
    before, after = outcome.kernel_before or "?", outcome.kernel_after
    return f"{before} -> {after}" if after else before


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def instance_rows(instances: Iterable[InstanceOutcome]) -> list[dict[str, Any]]:
    """One row per instance: the final status and why, first; then where, kernels, timing."""
    return [
        {
            "instance": i.instance_id,
            "hostname": i.hostname,
            "status": i.status.value,
            "reasons": "; ".join(i.reasons),
            "account": i.account_id,
            "region": i.region,
            "wave": "" if i.wave is None else i.wave,
            "kernel (old -> new)": _kernels(i),
            "target": i.target or "",
            "seconds to back online": _seconds(i.seconds_to_back_online),
            "post verdict": i.post_verdict or "",
            "notes": "; ".join(i.notes),
        }
        for i in instances
    ]


def wave_rows(result: WindowResult) -> list[dict[str, Any]]:
    """One row per wave: who, when, how many failed."""
    return [
        {
            "wave": w.number,
            "kind": w.kind.value,
            "instances": len(w.instance_ids),
            "state": w.state,
            "started": w.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if w.started_at else "",
            "ended": w.ended_at.strftime("%Y-%m-%d %H:%M:%S UTC") if w.ended_at else "",
            "failures": w.failures,
            "instance ids": ", ".join(w.instance_ids),
        }
        for w in result.waves
    ]


def preflight_rows(checked: Mapping[str, InstancePreflight]) -> list[dict[str, Any]]:
    """One row per instance: the preflight verdict and why, then the facts behind it."""
    rows = []
    for check in checked.values():
        facts = check.facts
        rows.append(
            {
                "instance": check.instance_id,
                "hostname": check.hostname,
                "verdict": check.verdict.value,
                "reasons": "; ".join(check.reasons),
                "account": check.account_id,
                "region": check.region,
                "group": check.group,
                "staged kernel": check.staged_kernel or "",
                "running kernel": (facts.kernel_running or "") if facts else "",
                "/boot free MB": (
                    facts.boot_free_kb // 1024 if facts and facts.boot_free_kb is not None else ""
                ),
                "package lock": facts.pkg_lock if facts else "",
                "CrowdStrike kernel check": facts.falcon_kernel_check if facts else "",
                "notes": "; ".join(check.notes),
            }
        )
    return rows


def decision_rows(result: WindowResult) -> list[dict[str, Any]]:
    return [
        {
            "kind": d.kind,
            "decision": d.decision,
            "approver": d.approver,
            "reason": d.reason,
            "at": d.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if d.decided_at else "",
        }
        for d in result.decisions
    ]


def outcome_line(outcome: InstanceOutcome, *details: str) -> str:
    """``- `i-0abc` web-01 (111122223333/us-east-1; install_failed): why``, escaped: hostnames
    and reasons come from the servers."""
    who = instance_label(outcome.instance_id, outcome.hostname, outcome.account_id, outcome.region)
    said = f" ({'; '.join(details)})" if details else ""
    return f"- {who}{said}: " + markdown_text("; ".join(outcome.reasons))


def _listed(result: WindowResult, status: FinalStatus) -> list[str]:
    return [outcome_line(i) for i in result.by_status(status)]


def _section(title: str, lines: list[str], intro: str = "") -> list[str]:
    if not lines:
        return []
    return [f"## {title}", "", *([intro, ""] if intro else []), *lines, ""]


def _headline(result: WindowResult, approval: str) -> list[str]:
    counts = ", ".join(f"{n} {s}" for s, n in result.status_counts().items()) or "none"
    mode = " (dry run: nothing installed)" if result.dry_run else ""
    lines = [
        f"# Linux patch window: {markdown_text(result.change_number)}{mode}",
        "",
        f"- flow run: {code_span(result.flow_run)}",
        f"- provider: {code_span(result.provider)}",
        f"- instances: {len(result.instances)} ({counts})",
        f"- error budget: {result.failures} failure(s) of {result.max_failures} allowed",
        f"- approval: {approval}",
    ]
    if result.halted:
        lines.append("- **halted**: the error budget was spent")
    if result.aborted:
        lines.append("- **stopped**: no further wave was started")
    if result.window_closed:
        lines.append("- **window closed**: window_end passed before every wave started")
    return [*lines, ""]


def window_report_markdown(result: WindowResult) -> str:
    """The window's report: what happened, who decided what, what needs a person."""
    approvals = [d for d in result.decisions if d.kind == "approval"]
    approval = (
        f"by {markdown_text(approvals[0].approver)}"
        + (f" ({markdown_text(approvals[0].reason)})" if approvals[0].reason else "")
        if approvals
        else "not asked (require_approval false, or a dry run)"
    )
    failures = [outcome_line(i, i.status.value) for i in result.instances if i.status.spends_budget]
    left_out = [
        f"- {code_span(i.instance_id)} {markdown_text(i.name or '')}: {markdown_text(i.reason)}"
        for i in result.left_out
    ]
    lines = _headline(result, approval)
    lines += _section("Decisions", [markdown_table(decision_rows(result))])
    lines += ["## Waves", "", markdown_table(wave_rows(result))]
    lines += _section("Needs attention", failures, "Each counts against the error budget.")
    lines += _section("Refused at preflight", _listed(result, FinalStatus.REFUSED_PREFLIGHT))
    lines += _section("Not started", _listed(result, FinalStatus.NOT_STARTED))
    lines += _section(
        "Not in this window", left_out, "Instances of the change that prep did not stage."
    )
    lines += ["## Instances", "", markdown_table(instance_rows(result.instances))]
    return "\n".join(lines)
