"""A change's report as markdown, CSV or HTML, from its :class:`ChangeHistory`.

Everything in it may come from a server (a host name, a reason quoting a repository line), so
each format escapes for itself: markdown cells through ``table_cell`` (no HTML, pipes escaped),
HTML through ``html.escape`` on every value, CSV with the cells a spreadsheet would run as a
formula (``=``, ``+``, ``-``, ``@``...) prefixed with a quote.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum

from flows.cli.change_history import ChangeHistory, InstanceStanding
from flows.cli.verdicts import Verdict
from flows.common.reporting import markdown_table
from flows.common.text import one_line


class ReportFormat(StrEnum):
    MD = "md"
    CSV = "csv"
    HTML = "html"


def when(moment: datetime | None) -> str:
    """A timestamp as the reports print it: ``2026-12-01 13:27:31 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _label(verdict: Verdict | None) -> str:
    return verdict.label if verdict else ""


def _reasons(verdict: Verdict | None) -> str:
    return "; ".join(verdict.reasons) if verdict else ""


CSV_COLUMNS = (
    "change_number",
    "instance_id",
    "name",
    "account_id",
    "region",
    "platform",
    "in_change",
    "prep_qc",
    "prep_qc_at",
    "prep_reasons",
    "kernel_before",
    "staged_kernel",
    "window_status",
    "window_at",
    "window_reasons",
    "post",
    "post_at",
    "post_reasons",
    "kernel_after",
)


def instance_record(change: str, standing: InstanceStanding) -> dict[str, str]:
    """Every column of one instance (``CSV_COLUMNS``), as the CSV export has them."""
    return {
        "change_number": change,
        "instance_id": standing.instance_id,
        "name": standing.name or "",
        "account_id": standing.account_id,
        "region": standing.region,
        "platform": standing.platform,
        "in_change": "yes" if standing.in_change else "no",
        "prep_qc": _label(standing.prep),
        "prep_qc_at": when(standing.prep.at if standing.prep else None),
        "prep_reasons": _reasons(standing.prep),
        "kernel_before": standing.kernel_before or "",
        "staged_kernel": standing.staged_kernel or "",
        "window_status": _label(standing.window),
        "window_at": when(standing.window.at if standing.window else None),
        "window_reasons": _reasons(standing.window),
        "post": _label(standing.post),
        "post_at": when(standing.post.at if standing.post else None),
        "post_reasons": _reasons(standing.post),
        "kernel_after": standing.kernel_after or "",
    }


def attention(standing: InstanceStanding) -> str:
    """Why an instance needs a person, from its latest failing verdicts."""
    parts = []
    for family, verdict in (("prep", standing.prep), ("window", standing.window)):
        if verdict is not None and verdict.ok is False:
            parts.append(f"{family}: {verdict.describe()}")
    if standing.post is not None and standing.post.ok is False:
        parts.append(f"post: {standing.post.describe()}")
    return " | ".join(parts)


def instance_row(standing: InstanceStanding) -> dict[str, str]:
    """The columns a person reads first, for the terminal, markdown and HTML."""
    return {
        "instance": standing.instance_id + ("" if standing.in_change else " (not in change)"),
        "name": standing.name or "",
        "account": standing.account_id,
        "region": standing.region,
        "prep QC": _label(standing.prep),
        "staged kernel": standing.staged_kernel or "",
        "window": _label(standing.window),
        "post": _label(standing.post),
        "kernel after": standing.kernel_after or "",
        "needs attention": attention(standing),
    }


def run_rows(history: ChangeHistory) -> list[dict[str, str]]:
    """One row per step of each flow run, oldest first."""
    return [
        {
            "started": when(line.run.started_at),
            "workflow": line.run.workflow,
            "step": line.run.step,
            "status": line.run.status,
            "ok": str(line.run.success_count),
            "failed": str(line.run.failure_count),
            "approved by": ", ".join(line.approved_by),
            "flow run": line.run.flow_run_id,
        }
        for line in history.runs
    ]


def decision_rows(history: ChangeHistory) -> list[dict[str, str]]:
    """One row per decision a person took during a run."""
    return [
        {
            "when": when(d.decided_at),
            "workflow": d.workflow,
            "kind": d.kind,
            "decision": d.decision,
            "by": d.approver,
            "reason": d.reason,
            "flow run": d.flow_run_id,
        }
        for d in history.decisions
    ]


def summary_lines(history: ChangeHistory) -> list[str]:
    """The report's opening lines: the change, its version, and the counts per workflow."""
    version = history.version
    saved = (
        f"version {version.version} saved {when(version.saved_at)}, "
        f"{len(version.targets)} instance(s)"
        if version
        else "no saved instance list (its runs were given instances directly)"
    )
    lines = [f"Change {history.change_number}: {saved}; {len(history.runs)} run step(s)."]
    for family in ("prep", "window", "post"):
        counts = ", ".join(f"{n} {label}" for label, n in history.counts(family).items())
        lines.append(f"{family}: {counts or 'no instances'}")
    lines.append(f"Read from {history.store} at {when(history.read_at)}.")
    return lines


def render_markdown(history: ChangeHistory) -> str:
    """The report as markdown."""
    parts = [
        f"# Change report {history.change_number}\n",
        "\n".join(f"- {one_line(line)}" for line in summary_lines(history)) + "\n",
        "## Instances\n",
        markdown_table([instance_row(s) for s in history.instances]),
        "## Runs\n",
        markdown_table(run_rows(history)),
        "## Decisions\n",
        markdown_table(decision_rows(history)),
    ]
    return "\n".join(parts)


# Cells a spreadsheet reads as a formula (OWASP's list); a leading quote makes them text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """``value`` on one line, safe to open in a spreadsheet."""
    text = one_line(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(history: ChangeHistory) -> str:
    """One row per instance, every column (the spreadsheet form)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for standing in history.instances:
        record = instance_record(history.change_number, standing)
        writer.writerow({k: csv_cell(v) for k, v in record.items()})
    return out.getvalue()


def _html_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>\n"
    headers = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{html.escape(one_line(row.get(h, '')))}</td>" for h in headers)
        + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}"
)


def render_html(history: ChangeHistory) -> str:
    """The report as one self-contained HTML page; every value escaped."""
    title = html.escape(f"Change report {history.change_number}")
    summary = "".join(f"<li>{html.escape(one_line(line))}</li>" for line in summary_lines(history))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # No script may run in a report opened from disk or S3, whatever text got into it.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">\n"
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n<ul>{summary}</ul>\n"
        "<h2>Instances</h2>\n"
        + _html_table([instance_row(s) for s in history.instances])
        + "<h2>Runs</h2>\n"
        + _html_table(run_rows(history))
        + "<h2>Decisions</h2>\n"
        + _html_table(decision_rows(history))
        + "</body>\n</html>\n"
    )


RENDERERS = {
    ReportFormat.MD: render_markdown,
    ReportFormat.CSV: render_csv,
    ReportFormat.HTML: render_html,
}
