"""The sft-fixer summary shows what detection read on an instance, the reason of each verdict
and the instance's name tag as words only: no markup, HTML, links or terminal codes."""

from __future__ import annotations

from hypothesis import given, settings

from flows.common.text import one_line
from flows.sft.detection import SftState, SftStatus
from flows.sft.parameters import SftAction
from flows.sft.report import summary_markdown
from flows.sft.result import SftFixerResult, SftInstanceOutcome, SftVerdict
from providers.base import Platform
from tests.flows.markdown_safety import assert_only_words_differ, assert_shown, hostile_text


def sft_result(text: str) -> SftFixerResult:
    state = SftState(
        platform=Platform.LINUX,
        installed=True,
        agent_type=text,
        status=SftStatus.STOPPED,
        linux_distro=text,
        error=text,
    )
    outcome = SftInstanceOutcome(
        instance_id="i-0000000000000000a",
        account_id="111111111111",
        region="us-east-1",
        platform=Platform.LINUX,
        name=text,
        verdict=SftVerdict.FAILED,
        reason=text,
        action_taken=SftAction.RESET,
        before=state,
        after=state,
    )
    return SftFixerResult(
        action=SftAction.AUTO,
        change_number="CHG0012345",
        provider="aws",
        outcomes=[outcome],
        report_path="",
    )


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_summary_shows_instance_text_as_words_only(text: str) -> None:
    hostile = summary_markdown(sft_result(text), "brave-otter")

    assert_only_words_differ(hostile, summary_markdown(sft_result("word"), "brave-otter"))
    if one_line(text):
        assert_shown(hostile, [one_line(text)])
