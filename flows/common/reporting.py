"""How a run talks to a person: Prefect artifacts and markdown report files."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows.common.text import first_line, one_line
from providers.base import BatchResult, ScriptResult

_KEY_CHARS = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from free text."""
    key = _KEY_CHARS.sub("-", "-".join(parts).lower()).strip("-")
    return key[:100] or "cloudops"


def utc_stamp(moment: datetime | None = None) -> str:
    """The timestamp used in report file names: ``20261126T071500Z``."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def result_rows(results: Iterable[ScriptResult]) -> list[dict[str, Any]]:
    """One row per instance for a table artifact."""
    return [
        {
            "instance": r.instance_id,
            "account": r.account_id,
            "region": r.region,
            "status": r.status.value,
            "exit code": "" if r.exit_code is None else r.exit_code,
            "output": first_line(r.stdout) + (" (truncated)" if r.stdout_truncated else ""),
            "error": r.error or first_line(r.stderr),
            "command": r.command_id or "",
        }
        for r in results
    ]


def table_cell(value: Any) -> str:
    """``value`` as one markdown table cell: one line, no HTML, its pipes escaped."""
    text = html.escape(one_line(str(value)), quote=False)
    # A backslash first, so that a `\|` in the text cannot turn the escape of its pipe back
    # into a cell separator.
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as a markdown table (``_none_`` for no rows)."""
    if not rows:
        return "_none_\n"
    headers = list(rows[0].keys())
    lines = ["| " + " | ".join(table_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_cell(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def status_counts(batch: BatchResult) -> str:
    """``3 success, 1 failed``: how many instances ended with each status."""
    counts = Counter(r.status.value for r in batch.results)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no targets"


def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    """A table artifact."""
    create_table_artifact(key=key, table=[dict(row) for row in rows], description=description)


def publish_results_table(key: str, batch: BatchResult, description: str) -> None:
    """A table artifact with one row per instance of ``batch``."""
    publish_table(key, result_rows(batch.results), description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)


def publish_link(key: str, url: str, text: str, description: str) -> None:
    """A link artifact: ``text`` opening ``url``."""
    create_link_artifact(link=url, link_text=text, key=key, description=description)


def write_report(directory: Path, filename: str, markdown: str) -> Path:
    """Write a markdown report file and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(markdown, encoding="utf-8")
    return path
