"""Decisions people took during a run, as the patch window records and the CLI reads them."""

from __future__ import annotations

import pytest

from flows.store import Store

WINDOW = "linux-qc-patching-window"


def test_decisions_are_kept_per_change_in_the_order_they_were_taken(store: Store):
    store.record_decision(
        "run-1", WINDOW, "CHG1", kind="approval", decision="approved", approver="Jane", reason=""
    )
    store.record_decision(
        "run-1",
        WINDOW,
        "CHG1",
        kind="halt",
        decision="abort",
        approver="  Ops \n on call ",
        reason="canary booted the old kernel",
    )
    store.record_decision(
        "run-9", WINDOW, "CHG2", kind="approval", decision="approved", approver="Bo", reason="ok"
    )

    first, second = store.decisions_for_change("CHG1")
    assert (first.kind, first.decision, first.approver) == ("approval", "approved", "Jane")
    assert (second.kind, second.decision) == ("halt", "abort")
    assert second.approver == "Ops on call"  # one line, as a table shows it
    assert second.reason == "canary booted the old kernel"
    assert second.decided_at >= first.decided_at
    assert [d.change_number for d in store.decisions_for_change("CHG2")] == ["CHG2"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("approver", "   ", "approver is empty"),
        ("approver", "x" * 101, "at most 100"),
        ("decision", "Abort Now", "not something the store records"),
    ],
)
def test_a_decision_without_a_name_or_with_a_free_text_kind_is_refused(
    store: Store, field: str, value: str, problem: str
):
    fields = {"kind": "halt", "decision": "abort", "approver": "Jane", "reason": "r"}
    fields[field] = value
    with pytest.raises(ValueError, match=problem):
        store.record_decision("run-1", WINDOW, "CHG1", **fields)
    assert store.decisions_for_change("CHG1") == []
