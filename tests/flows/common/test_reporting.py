"""How instances, their output and empty tables read in reports and artifacts."""

from __future__ import annotations

import json

import pytest
from prefect import flow

from flows.common.reporting import (
    ArtifactBoard,
    instance_label,
    markdown_table,
    output_section,
    result_rows,
)
from providers.base import ResultStatus, ScriptResult
from tests.prefect_artifacts import read_artifacts

RESULT = ScriptResult(
    instance_id="i-0123456789abcdef0",
    account_id="111122223333",
    region="us-east-1",
    status=ResultStatus.FAILED,
    exit_code=2,
    stdout="a" * 10 + "\n```\n# heading\n",
    stderr="boom\n",
    stdout_truncated=True,
    error="the script exited with a non-zero code",
)


def test_an_instance_is_named_with_its_host_account_and_region() -> None:
    assert instance_label("i-1", "web-01\n", "111122223333", "us-east-1") == (
        "`i-1` web-01 (111122223333/us-east-1)"
    )
    assert instance_label("localhost", None, "", "") == "`localhost`"


def test_a_result_row_puts_who_and_why_first() -> None:
    [row] = result_rows([RESULT], {RESULT.instance_id: "web-01"})
    assert list(row)[:4] == ["instance", "name", "status", "problem"]
    assert row["name"] == "web-01" and row["problem"].startswith("the script exited")


def test_an_output_section_folds_the_whole_output_and_says_where_it_was_cut() -> None:
    hostile = RESULT.model_copy(update={"stdout": "one\n\n<b>two</b>\x1b]0;title\x07\n"})
    section = output_section(hostile, "web-01")
    assert section.startswith(
        "<details><summary>i-0123456789abcdef0 web-01 (111122223333/us-east-1): failed, "
        "exit code 2</summary>\n"
    )
    assert "<p>stdout (cut at 26 characters by the SSM API):</p>" in section
    # Escaped, the terminal title gone, and the empty line kept without ending the HTML block.
    assert "<pre>one\n&nbsp;\n&lt;b&gt;two&lt;/b&gt;</pre>" in section
    assert "\n\n" not in section.rstrip("\n")
    assert "<p>stderr:</p>\n<pre>boom</pre>" in section


def test_a_table_cell_keeps_a_pipe_and_a_backslash_in_their_cell() -> None:
    table = markdown_table([{"a": "x\\|y", "b": "<b>1</b>\nnext"}])
    assert "| x\\\\\\|y | &lt;b&gt;1&lt;/b&gt; next |" in table


@pytest.mark.usefixtures("prefect_server")
def test_a_table_shown_twice_in_a_run_is_one_artifact_and_an_empty_one_says_why() -> None:
    @flow
    def shows_tables() -> str:
        board = ArtifactBoard()
        board.table("twice", [{"n": 1}], "first", empty="none")
        board.table("twice", [{"n": 2}], "second", empty="none")
        board.table("empty-table", [], "nothing here", empty="Every instance passed.")
        from prefect.runtime import flow_run

        return str(flow_run.id)

    run_id = shows_tables()
    mine = read_artifacts(flow_run_id=run_id)
    [twice] = [a for a in mine if a.key == "twice"]
    assert json.loads(twice.data) == [{"n": 2}] and twice.description == "second"
    [empty] = [a for a in mine if a.key == "empty-table"]
    assert empty.type == "markdown" and empty.data == "_Every instance passed._"
