"""The forms a paused run shows: what they accept and refuse, before any run pauses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.common.pauses import Approval, HaltChoice, HaltDecision


def test_an_approval_needs_a_name_on_one_line() -> None:
    approval = Approval(approver="  Jane\nDoe ", comment="window opened on time")
    assert approval.approver == "Jane Doe"
    with pytest.raises(ValidationError, match="approver"):
        Approval(approver="  \n ")


def test_a_halt_decision_is_continue_or_abort_with_who_and_why() -> None:
    decision = HaltDecision(decision="abort", approver="Jane", reason="canary failed")
    assert decision.decision is HaltChoice.ABORT
    for refused in (
        {"decision": "retry", "approver": "Jane", "reason": "r"},
        {"decision": "continue", "approver": "Jane", "reason": " "},
        {"decision": "continue", "approver": "", "reason": "r"},
    ):
        with pytest.raises(ValidationError):
            HaltDecision.model_validate(refused)


def test_the_forms_describe_each_field_for_the_ui() -> None:
    schema = HaltDecision.model_json_schema()
    assert set(schema["required"]) == {"decision", "approver", "reason"}
    assert all(schema["properties"][f].get("description") for f in schema["required"])
