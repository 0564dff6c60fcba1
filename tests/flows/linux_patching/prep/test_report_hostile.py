"""The prep reports show whatever an instance printed as words: its host name, kernel and
CrowdStrike lines, its error text, the QC report and patchme.sh read back from it, the name
tag it carries. Nothing of it becomes markup, HTML, a link or a terminal code."""

from __future__ import annotations

from hypothesis import given, settings

from flows.common.text import one_line
from flows.linux_patching.prep.kernel_choice import GroupDecision
from flows.linux_patching.prep.kernel_groups import KernelGroup
from flows.linux_patching.prep.parameters import QcEngine
from flows.linux_patching.prep.qc import InstanceQc, QcVerdict
from flows.linux_patching.prep.report import final_report_markdown, qc_results_markdown
from flows.linux_patching.prep.result import PrepResult
from flows.linux_patching.prep.staging import InstancePrepFiles
from flows.linux_patching.prep_record import PrepStep, StagedInstance
from flows.linux_patching.qc_report import CollectedPrepFiles, QcReport
from providers.base import ResultStatus
from tests.flows.markdown_safety import assert_only_words_differ, assert_shown, hostile_text

PASSED_ID, FAILED_ID = "i-0000000000000000a", "i-0000000000000000b"


def prep_result(text: str) -> PrepResult:
    """A prep run of two instances in which everything that came from them is ``text``."""
    report = QcReport(
        hostname=text,
        kernel=text,
        distro=text,
        crowdstrike_running=True,
        crowdstrike_version=text,
        repos_passed=True,
        disk_passed=True,
        passed=True,
    )
    passed = InstanceQc(
        instance_id=PASSED_ID,
        account_id="111111111111",
        region="us-east-1",
        name=text,
        verdict=QcVerdict.PASSED,
        status=ResultStatus.SUCCESS,
        report=report,
    )
    failed = passed.model_copy(
        update={"instance_id": FAILED_ID, "verdict": QcVerdict.FAILED, "reasons": [text, text]}
    )
    group = KernelGroup(
        name=f"Group {text}",
        distro=text,
        base_kernel="4.18.0-553",
        instance_ids=[PASSED_ID],
        available_kernels=[],
    )
    files = CollectedPrepFiles(qc_report=text, patchme=text, truncated=[text])
    return PrepResult(
        change_number="CHG0012345",
        provider="aws",
        flow_run="brave-otter",
        steps=list(PrepStep),
        qc_engine=QcEngine.BUILTIN,
        workdir="/root",
        require_crowdstrike=True,
        instances=[passed, failed],
        groups=[group],
        decisions=[GroupDecision(group=group.name, reason=text)],
        staged=[
            StagedInstance(
                instance_id=PASSED_ID,
                group=group.name,
                kernel="4.18.0-553.45.1.el8_10",
                status=ResultStatus.FAILED,
                staged_kernel=text,
                error=text,
            )
        ],
        collected=[
            InstancePrepFiles(instance_id=PASSED_ID, status=ResultStatus.SUCCESS, files=files),
            InstancePrepFiles(instance_id=FAILED_ID, status=ResultStatus.FAILED, error=text),
        ],
    )


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_qc_results_report_shows_instance_text_as_words_only(text: str) -> None:
    hostile = qc_results_markdown(prep_result(text), "brave-otter")

    assert_only_words_differ(hostile, qc_results_markdown(prep_result("word"), "brave-otter"))
    if one_line(text):
        assert_shown(hostile, [one_line(text)])


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_final_report_shows_instance_text_as_words_only(text: str) -> None:
    hostile = final_report_markdown(prep_result(text))

    assert_only_words_differ(hostile, final_report_markdown(prep_result("word")))
    if one_line(text):
        assert_shown(hostile, [f"{PASSED_ID} ({one_line(text)})"])
