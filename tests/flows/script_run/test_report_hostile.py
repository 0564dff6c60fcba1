"""The run-script summary shows what the script printed on each instance (its first line of
output and of errors) and the error AWS gave as words only: no markup, HTML, links or terminal
codes, and every row keeps its cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows import run_script
from flows.common.text import first_line, one_line
from flows.script_run.report import RunScriptResult, summary_markdown
from providers.base import BatchResult, ResultStatus, ScriptResult, Target
from tests.flows.markdown_safety import assert_only_words_differ, assert_shown, hostile_text

LOCALHOST = Target(instance_id="localhost", account_id="local", region="local")


def script_result(text: str) -> RunScriptResult:
    printed = ScriptResult(
        instance_id="i-0000000000000000a",
        account_id="111111111111",
        region="us-east-1",
        status=ResultStatus.SUCCESS,
        exit_code=0,
        stdout=text,
        stderr=text,
    )
    refused = printed.model_copy(
        update={
            "instance_id": "i-0000000000000000b",
            "status": ResultStatus.ERROR,
            "exit_code": None,
            "error": text,
        }
    )
    return RunScriptResult(
        change_number=None,
        provider="aws",
        script="inline",
        batch=BatchResult.from_results([printed, refused]),
        report_path="",
    )


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_summary_shows_script_output_as_words_only(text: str) -> None:
    hostile = summary_markdown(script_result(text), "brave-otter")

    assert_only_words_differ(hostile, summary_markdown(script_result("word"), "brave-otter"))
    if first_line(text):
        assert_shown(hostile, [one_line(first_line(text))])


HOSTILE_SCRIPT = r"""printf '\033]0;title\007\033]52;c;cm0gLXJmIC8K\007'
printf '[x](javascript:alert(1)) a \\| b | '
printf '<img src=x onerror=alert(1)> ``` *bold* \033[2J\n'
printf '<script>alert(1)</script>\n' >&2
exit 3
"""
HARMLESS_SCRIPT = "printf 'word\\n'\nprintf 'word\\n' >&2\nexit 3\n"


def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in found if a.key}


def run_and_read(script: str) -> tuple[dict[str, Any], str]:
    state = run_script(script=script, targets=[LOCALHOST], provider="local", return_state=True)
    result = state.result()
    return artifacts_of(state.state_details.flow_run_id), Path(result.report_path).read_text()


@pytest.mark.usefixtures("prefect_server", "data_dir")
def test_hostile_output_stays_words_in_the_artifacts_and_the_report_file() -> None:
    hostile_artifacts, hostile_file = run_and_read(HOSTILE_SCRIPT)
    harmless_artifacts, harmless_file = run_and_read(HARMLESS_SCRIPT)

    assert_only_words_differ(hostile_file, harmless_file)
    summary = hostile_artifacts["run-script-summary"]
    assert_only_words_differ(summary, harmless_artifacts["run-script-summary"])
    # The UI renders each cell of a table artifact as markdown on its own.
    (hostile_row,) = table_rows(hostile_artifacts["run-script-results"])
    (harmless_row,) = table_rows(harmless_artifacts["run-script-results"])
    for column in ("output", "problem"):
        assert_only_words_differ(str(hostile_row[column]), str(harmless_row[column]))
    assert_shown(summary, ["[x](javascript:alert(1)) a \\| b | <img src=x onerror=alert(1)>"])


def table_rows(data: Any) -> list[dict[str, Any]]:
    return json.loads(data) if isinstance(data, str) else data
