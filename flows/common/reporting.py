"""How a run talks to a person: Prefect artifacts and markdown report files."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.common.private_files import private_directory, write_private_file
from flows.common.text import first_line, markdown_text
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
    """``value`` as one markdown table cell: one line of words, no HTML or markup, its pipes
    escaped (``markdown_text``), so neither a pipe nor a backslash before one splits it."""
    return markdown_text(str(value))


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
    """A table artifact. The Prefect UI renders each cell as markdown, so text cells are
    escaped as in a markdown table; numbers and flags stay as they are."""
    create_table_artifact(
        key=key,
        table=[
            {
                column: table_cell(value) if isinstance(value, str) else value
                for column, value in row.items()
            }
            for row in rows
        ],
        description=markdown_text(description),
    )


def publish_results_table(key: str, batch: BatchResult, description: str) -> None:
    """A table artifact with one row per instance of ``batch``."""
    publish_table(key, result_rows(batch.results), description)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A markdown artifact (``markdown`` is built from escaped parts by the report modules)."""
    create_markdown_artifact(key=key, markdown=markdown, description=markdown_text(description))


def write_report(directory: Path, filename: str, markdown: str) -> Path:
    """Write a markdown report file (0600, in a 0700 directory: reports hold instance
    output) and return its path."""
    private_directory(directory)
    path = directory / filename
    write_private_file(path, markdown)
    return path
