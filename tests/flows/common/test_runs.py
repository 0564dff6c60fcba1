"""The comment every command of a run carries: who sent it, in the room SSM leaves it."""

from __future__ import annotations

from flows.common.runs import WorkflowRun
from flows.store import Store
from providers.aws.ssm import COMMENT_LIMIT, command_comment
from providers.base import REQUEST_COMMENT_ROOM
from providers.local import LocalProvider


def _run(change: str | None, workflow: str, run_name: str) -> WorkflowRun:
    return WorkflowRun(
        workflow=workflow,
        provider=LocalProvider(),
        store=Store("sqlite://"),
        change=change,
        flow_run_id="0b6f4c1e-1111-2222-3333-444455556666",
        run_name=run_name,
    )


def test_a_short_comment_names_change_workflow_step_and_run_whole() -> None:
    run = _run("CHG0042", "sft-fixer", "tangerine-beaver")

    assert run.comment("detect") == "CHG0042 sft-fixer detect tangerine-beaver"
    assert _run(None, "run-script", "calm-owl").comment() == "adhoc run-script calm-owl"


def test_a_long_comment_keeps_the_start_of_every_part_and_room_for_the_chunk_marker() -> None:
    change = "CHG-" + "9" * 46  # the longest change number there is: 50 characters
    run = _run(change, "linux-qc-patching-prep", "extraordinary-hippopotamus")

    comment = run.comment("initial_qc")

    assert len(comment) <= REQUEST_COMMENT_ROOM
    # The longest parts give way first: each keeps its start, the short step stays whole.
    parts = comment.split(" ")
    originals = [change, "linux-qc-patching-prep", "initial_qc", "extraordinary-hippopotamus"]
    assert [o.startswith(p) for p, o in zip(parts, originals, strict=True)] == [True] * 4
    assert parts[2] == "initial_qc" and min(len(p) for p in parts) >= 10
    sent = command_comment(comment, "a1b2c3d4e5f6a7b8c9d0")
    assert len(sent) <= COMMENT_LIMIT and sent == f"{comment} #a1b2c3d4e5f6a7b8c9d0"
