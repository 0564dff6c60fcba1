"""The post report shows what an instance printed (host name, kernel, findings, errors) and
the name it is tagged with as words only: no markup, HTML, links or terminal codes."""

from __future__ import annotations

from hypothesis import given, settings

from flows.common.text import one_line
from flows.linux_patching.drift import InstanceDrift
from flows.linux_patching.post.report import post_report_markdown
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_check import PostReport
from flows.linux_patching.post_verdict import InstancePost, PostVerdict
from providers.base import ResultStatus
from tests.flows.markdown_safety import assert_only_words_differ, assert_shown, hostile_text


def post_result(text: str) -> PostResult:
    """A post run of two instances in which everything that came from them is ``text``."""
    report = PostReport(
        summary_found=True, hostname=text, kernel_running=text, passed=True, notes=[text]
    )
    drift = InstanceDrift(
        prep_record=True, qc_before="passed", kernel_before=text, kernel_after=text, notes=[text]
    )
    passed = InstancePost(
        instance_id="i-0000000000000000a",
        account_id="111111111111",
        region="us-east-1",
        name=text,
        verdict=PostVerdict.PASSED,
        status=ResultStatus.SUCCESS,
        report=report,
        drift=drift,
    )
    failed = passed.model_copy(
        update={
            "instance_id": "i-0000000000000000b",
            "verdict": PostVerdict.FAILED,
            "reasons": [text],
        }
    )
    return PostResult(
        change_number="CHG0012345",
        provider="aws",
        flow_run="brave-otter",
        workdir="/root",
        target_kernel=None,
        instances=[passed, failed],
    )


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_post_report_shows_instance_text_as_words_only(text: str) -> None:
    hostile = post_report_markdown(post_result(text))

    assert_only_words_differ(hostile, post_report_markdown(post_result("word")))
    if one_line(text):
        assert_shown(hostile, [one_line(text)])
