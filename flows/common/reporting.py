"""How a run talks to a person: Prefect artifacts and markdown report files."""

from __future__ import annotations

import html
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate

from flows.common.private_files import private_directory, write_private_file
from flows.common.text import clean_output, code_span, first_line, markdown_text, one_line
from providers.base import BatchResult, ScriptResult

_KEY_CHARS = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from free text."""
    key = _KEY_CHARS.sub("-", "-".join(parts).lower()).strip("-")
    return key[:100] or "cloudops"


def utc_stamp(moment: datetime | None = None) -> str:
    """The timestamp used in report file names: ``20261126T071500Z``."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def instance_label(instance_id: str, name: str | None, account_id: str, region: str) -> str:
    """One instance as a line of a report names it: ``i-0abc… web-01 (111122223333/us-east-1)``."""
    where = "/".join(p for p in (account_id, region) if p)
    named = f" {markdown_text(one_line(name))}" if name else ""
    return code_span(instance_id) + named + (f" ({markdown_text(where)})" if where else "")


def result_rows(
    results: Iterable[ScriptResult], names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per instance for a table: who, what happened and why first, then the rest.
    ``names`` gives each instance's hostname (from the change file) by instance id."""
    names = names or {}
    return [
        {
            "instance": r.instance_id,
            "name": names.get(r.instance_id, ""),
            "status": r.status.value,
            "problem": r.error or ("" if r.status.is_success else first_line(r.stderr)),
            "exit code": "" if r.exit_code is None else r.exit_code,
            "output": first_line(r.stdout) + (" (truncated)" if r.stdout_truncated else ""),
            "account": r.account_id,
            "region": r.region,
            "command": r.command_id or "",
        }
        for r in results
    ]


def table_cell(value: Any) -> str:
    """``value`` as one markdown table cell: one line of words, no HTML or markup, its pipes
    escaped (``markdown_text``), so neither a pipe nor a backslash before one splits it."""
    return markdown_text(str(value))


def _pre(text: str) -> str:
    """``text`` as an HTML ``<pre>`` block: cleaned, escaped, and with no blank line, since a
    blank line would end the surrounding HTML block in markdown (an empty line becomes a
    no-break space, which shows the same)."""
    lines = html.escape(clean_output(text).rstrip("\n"), quote=False).split("\n")
    return "<pre>" + "\n".join(line if line.strip() else "&nbsp;" for line in lines) + "</pre>"


def output_section(result: ScriptResult, name: str | None) -> str:
    """One instance's whole output as a collapsed section (HTML ``<details>``, which markdown
    viewers and the Prefect UI fold): its stdout and stderr, escaped, and where an API cap cut
    them. No blank line inside, so the section stays one HTML block."""
    exit_code = "" if result.exit_code is None else f", exit code {result.exit_code}"
    where = "/".join(p for p in (result.account_id, result.region) if p)
    who = " ".join(p for p in (result.instance_id, one_line(name or ""), f"({where})") if p)
    summary = html.escape(f"{who}: {result.status.value}{exit_code}", quote=False)
    parts = [f"<details><summary>{summary}</summary>"]
    if result.error:
        parts.append(f"<p>Problem: {html.escape(one_line(result.error), quote=False)}</p>")
    for label, text, cut in (
        ("stdout", result.stdout, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_truncated),
    ):
        if text:
            note = f" (cut at {len(text):,} characters by the SSM API)" if cut else ""
            parts += [f"<p>{label}{note}:</p>", _pre(text)]
    if not (result.stdout or result.stderr):
        parts.append("<p><em>no output</em></p>")
    return "\n".join([*parts, "</details>", ""])


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


@dataclass
class ArtifactBoard:
    """The artifacts of one run, by key: publishing a key again updates its artifact, so a run
    shows one card per kind however often it refreshes it (prep shows its QC table while it
    waits for a kernel choice, then the same table with what was staged).

    A table without rows is shown as a sentence saying why, not as Prefect's bare
    "No results".
    """

    _published: dict[str, tuple[str, UUID]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def table(
        self, key: str, rows: Sequence[Mapping[str, Any]], description: str, empty: str
    ) -> None:
        """A table artifact of ``rows``, or the sentence ``empty`` when there are none."""
        if not rows:
            self.markdown(key, f"_{markdown_text(empty)}_", description)
            return
        # The Prefect UI renders each cell as markdown: text cells are escaped as in a markdown
        # table; numbers and flags stay as they are.
        table = [
            {
                column: table_cell(value) if isinstance(value, str) else value
                for column, value in row.items()
            }
            for row in rows
        ]
        description = markdown_text(description)
        if not self._update(key, "table", json.dumps(table, default=str), description):
            created = create_table_artifact(key=key, table=table, description=description)
            self._remember(key, "table", created)

    def markdown(self, key: str, markdown: str, description: str) -> None:
        """A markdown artifact (``markdown`` is built from escaped parts by the report modules)."""
        description = markdown_text(description)
        if not self._update(key, "markdown", markdown, description):
            created = create_markdown_artifact(key=key, markdown=markdown, description=description)
            self._remember(key, "markdown", created)

    def _update(self, key: str, kind: str, data: str, description: str) -> bool:
        with self._lock:
            known = self._published.get(key)
        if known is None or known[0] != kind:
            return False
        with get_client(sync_client=True) as client:
            client.update_artifact(known[1], ArtifactUpdate(data=data, description=description))
        return True

    def _remember(self, key: str, kind: str, artifact_id: object) -> None:
        # Called from sync flow code, so Prefect's dispatcher returns the id, not a coroutine.
        with self._lock:
            self._published[key] = (kind, cast(UUID, artifact_id))


def publish_link(key: str, url: str, text: str, description: str) -> None:
    """A link artifact: ``text`` opening ``url``."""
    create_link_artifact(
        link=url, link_text=markdown_text(text), key=key, description=markdown_text(description)
    )


def write_report(directory: Path, filename: str, markdown: str) -> Path:
    """Write a markdown report file (0600, in a 0700 directory: reports hold instance
    output) and return its path."""
    private_directory(directory)
    path = directory / filename
    write_private_file(path, markdown)
    return path
