"""The prep flow's parts on their own: parameter checks, kernel choice rules, the UI form,
QC verdicts and the report's code blocks; and the README's demo on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.utilities.callables import create_v2_schema
from pydantic import ValidationError

from flows import demo
from flows.common.text import fenced
from flows.linux_patching.prep.kernel_choice import (
    KernelChoiceError,
    decide_from_parameters,
    decide_kernels,
    kernel_choice_form,
    stageable_kernels,
)
from flows.linux_patching.prep.kernel_groups import KernelGroup
from flows.linux_patching.prep.parameters import (
    KernelChoiceRequest,
    PrepParameterError,
    QcEngine,
    validate_prep_parameters,
)
from flows.linux_patching.prep.qc import QcVerdict, judge_qc, qc_script
from flows.linux_patching.prep.staging import not_offered
from flows.linux_patching.prep_record import PrepStep
from providers.base import ResultStatus, ScriptResult, Target

RHEL = KernelGroup(
    name="RHEL8.10 - Kernel 4.18.0-553",
    distro="RHEL8.10",
    base_kernel="4.18.0-553",
    instance_ids=["i-0000000000000000a", "i-0000000000000000b"],
    available_kernels=["4.18.0-553.8.1.el8_10", "4.18.0-553.45.1.el8_10"],
    instance_kernels={
        "i-0000000000000000a": ["4.18.0-553.8.1.el8_10", "4.18.0-553.45.1.el8_10"],
        "i-0000000000000000b": ["4.18.0-553.8.1.el8_10"],
    },
)
AL2 = KernelGroup(
    name="AL2 - Kernel 4.14.343-261",
    distro="AL2",
    base_kernel="4.14.343-261",
    instance_ids=["i-0000000000000000c"],
    available_kernels=["4.14.348-265.562.amzn2"],
)
EMPTY = KernelGroup(
    name="RHEL9.4 - Kernel 5.14.0-427",
    distro="RHEL9.4",
    base_kernel="5.14.0-427",
    instance_ids=["i-0000000000000000d"],
    available_kernels=[],
)
TARGET = Target(instance_id="i-0000000000000000a", account_id="111111111111", region="us-east-1")

DEFAULTS = dict(
    change_number="CHG0012345",
    change_csv=None,
    workdir="/root",
    qc_engine="builtin",
    patcher_url=None,
    patcher_args="-q",
    patcher_sha256=None,
    kernel_choices=None,
    steps=("initial_qc", "stage_kernels", "final_report"),
    min_var_free_gb=3,
    qc_timeout_seconds=1800,
)


def params(**override: object):
    return validate_prep_parameters(**{**DEFAULTS, **override})


# --- parameters ----------------------------------------------------------------------------------


def test_every_bad_parameter_is_listed_at_once() -> None:
    with pytest.raises(PrepParameterError) as refused:
        params(
            change_number="CHG 1",
            workdir="relative/dir",
            qc_engine="linux-patcher",
            kernel_choices={"G": "latest"},
            steps=["initial_qc", "patch_now"],
        )
    problems = refused.value.problems
    assert [p.split(" ", 1)[0] for p in problems] == [
        "change_number:",
        "workdir",
        "qc_engine",
        "kernel_choices['G']:",
        "steps:",
    ]
    assert "patcher_url" in problems[2]


def test_steps_run_in_runbook_order_and_kernels_are_normalised() -> None:
    checked = params(
        steps=["final_report", "initial_qc"],
        kernel_choices={RHEL.name: "kernel-4.18.0-553.45.1.el8_10.x86_64"},
    )
    assert checked.steps == (PrepStep.INITIAL_QC, PrepStep.FINAL_REPORT)
    assert checked.kernel_choices.per_group == {RHEL.name: "4.18.0-553.45.1.el8_10"}


@pytest.mark.parametrize("workdir", ["/root/../etc", "/tmp/a b", "/root;reboot", "/$(id)"])
def test_workdir_must_be_a_plain_absolute_path(workdir: str) -> None:
    with pytest.raises(PrepParameterError, match="workdir"):
        params(workdir=workdir)


def test_change_number_is_needed_unless_a_csv_gives_it() -> None:
    with pytest.raises(PrepParameterError, match="change_number is required"):
        params(change_number=None)
    assert params(change_number=None, change_csv="x.csv").change_number is None


def test_linux_patcher_settings_reach_its_script_quoted() -> None:
    url = "s3://ops-bucket/tools/linux_patcher.sh"
    checked = params(qc_engine="linux-patcher", patcher_url=url, patcher_args="-q -v")
    script = qc_script(checked, "CHG0012345")
    assert checked.qc_engine is QcEngine.LINUX_PATCHER
    assert f"export PATCHER_URL={url}\n" in script
    assert "export PATCHER_ARGS='-q -v'\n" in script
    assert "export PATCHER_TIMEOUT_SECONDS=1740\n" in script
    with pytest.raises(PrepParameterError, match="patcher_args is empty"):
        params(qc_engine="linux-patcher", patcher_url=url, patcher_args=" ")


def test_presigned_signature_is_not_shown_when_the_url_is_refused() -> None:
    with pytest.raises(PrepParameterError) as refused:
        params(
            qc_engine="linux-patcher",
            patcher_url="https://h/p.sh?X-Amz-Signature=SECRETSIG 1",
        )
    assert "SECRETSIG" not in str(refused.value)


# --- kernel choices ------------------------------------------------------------------------------


def test_a_mapping_stages_the_named_groups_and_reports_the_others() -> None:
    decisions = decide_from_parameters(
        [AL2, RHEL, EMPTY], KernelChoiceRequest(per_group={RHEL.name: "4.18.0-553.8.1.el8_10"})
    )
    by_group = {d.group: d for d in decisions}
    assert by_group[RHEL.name].kernel == "4.18.0-553.8.1.el8_10"
    assert by_group[AL2.name].kernel is None
    assert by_group[AL2.name].reason == "no kernel was chosen for this group"
    assert "no kernel update is available" in (by_group[EMPTY.name].reason or "")


def test_one_kernel_string_applies_where_the_group_offers_it() -> None:
    decisions = decide_from_parameters(
        [AL2, RHEL], KernelChoiceRequest(for_every_group="4.18.0-553.45.1.el8_10")
    )
    by_group = {d.group: d for d in decisions}
    assert by_group[RHEL.name].kernel == "4.18.0-553.45.1.el8_10"
    assert "is not offered to this group" in (by_group[AL2.name].reason or "")
    with pytest.raises(KernelChoiceError, match="offered to no group"):
        decide_from_parameters([AL2, RHEL], KernelChoiceRequest(for_every_group="5.0.0-1"))


def test_out_of_list_and_unknown_groups_are_refused_with_the_options() -> None:
    with pytest.raises(KernelChoiceError) as refused:
        decide_kernels(
            [RHEL, AL2],
            {RHEL.name: "4.18.0-553.99.1.el8_10", "Ubuntu - Kernel 5.15.0-1": "5.15.0-2-generic"},
        )
    message = str(refused.value)
    assert "4.18.0-553.99.1.el8_10 is not in the list of group" in message
    assert "there is no kernel group 'Ubuntu - Kernel 5.15.0-1'" in message
    assert "4.18.0-553.8.1.el8_10, 4.18.0-553.45.1.el8_10" in message


def test_a_listed_kernel_that_is_not_a_plain_version_is_never_offered() -> None:
    odd = RHEL.model_copy(
        update={"available_kernels": ["4.18.0-553.8.1.el8_10", "4.18.0-1$(reboot)"]}
    )
    assert stageable_kernels(odd) == ["4.18.0-553.8.1.el8_10"]
    with pytest.raises(KernelChoiceError):
        decide_kernels([odd], {odd.name: "4.18.0-1$(reboot)"})


def test_the_ui_form_offers_exactly_each_groups_kernels() -> None:
    form = kernel_choice_form(
        [RHEL, AL2, EMPTY],
        KernelChoiceRequest(per_group={AL2.name: "4.14.348-265.562.amzn2"}),
        "C1",
    )
    schema = create_v2_schema(form.__name__, model_base=form)
    properties = schema["properties"]
    assert set(properties) == {RHEL.name, AL2.name}  # a group without kernels has no field
    rhel = json.dumps(properties[RHEL.name])
    assert '"enum": ["4.18.0-553.8.1.el8_10", "4.18.0-553.45.1.el8_10"]' in rhel
    assert properties[RHEL.name]["default"] == "4.18.0-553.45.1.el8_10"  # the newest
    assert properties[AL2.name]["default"] == "4.14.348-265.562.amzn2"  # the preset
    assert form(**{RHEL.name: None}).model_dump(by_alias=True)[RHEL.name] is None
    with pytest.raises(ValidationError):
        form(**{RHEL.name: "4.18.0-553.99.1.el8_10"})


def test_the_form_says_how_many_hosts_of_a_group_offer_each_kernel() -> None:
    form = kernel_choice_form([RHEL, AL2], KernelChoiceRequest(), "C1")

    counts = "4.18.0-553.8.1.el8_10 (2 of 2 hosts), 4.18.0-553.45.1.el8_10 (1 of 2 hosts)"
    schema = create_v2_schema(form.__name__, model_base=form)
    assert counts in schema["properties"][RHEL.name]["description"]
    assert f"hosts offering each kernel: {counts}" in (form._description or "")


def test_a_host_that_does_not_offer_the_choice_is_not_offered_with_its_own_kernels() -> None:
    assert RHEL.offered_by("kernel-4.18.0-553.45.1.el8_10.x86_64") == ["i-0000000000000000a"]
    assert not RHEL.offers("i-0000000000000000b", "4.18.0-553.45.1.el8_10")

    host = Target(instance_id="i-0000000000000000b", account_id="111111111111", region="us-east-1")
    result, staged = not_offered(
        host, RHEL.name, "4.18.0-553.45.1.el8_10", ["4.18.0-553.8.1.el8_10"]
    )

    assert result.status is ResultStatus.SKIPPED and result.command_id is None
    assert staged.outcome == "not_offered" and not staged.staged
    assert staged.offered_kernels == ["4.18.0-553.8.1.el8_10"]
    assert "offer (4.18.0-553.8.1.el8_10)" in (staged.error or "")


# --- QC verdicts ---------------------------------------------------------------------------------

PASSING = """===== QC report for web01 =====
(Current date): Tue May 14 10:00:00 UTC 2024
(Server running since): 2024-05-01 08:12:44
(Current running kernel version): 4.18.0-553.5.1.el8_10.x86_64
(Is Crowdstrike running): No
(Current Crowdstrike Version): Not installed
(Available Kernel Updates):
kernel.x86_64  4.18.0-553.45.1.el8_10  rhel-8-for-x86_64-baseos-rpms
(Test Repositories Result): PASSED
(Disk Space Check Result): PASSED
"""


def result(status: ResultStatus, stdout: str = "", exit_code: int | None = 0, **kw: object):
    return ScriptResult(
        instance_id=TARGET.instance_id, status=status, stdout=stdout, exit_code=exit_code, **kw
    )


def test_crowdstrike_rule_can_be_switched_off() -> None:
    assert judge_qc(TARGET, result(ResultStatus.SUCCESS, PASSING), True).verdict is QcVerdict.FAILED
    relaxed = judge_qc(TARGET, result(ResultStatus.SUCCESS, PASSING), False)
    assert relaxed.verdict is QcVerdict.PASSED and relaxed.reasons == []


def test_a_qc_that_produced_no_report_is_a_qc_error_with_the_scripts_message() -> None:
    refused = result(
        ResultStatus.FAILED, "", exit_code=2, stderr="qc.sh refused to run: WORKDIR must be ..."
    )
    verdict = judge_qc(TARGET, refused, True)
    assert verdict.verdict is QcVerdict.QC_ERROR
    assert "exited with code 2 (qc.sh refused to run" in verdict.reasons[0]
    timed_out = result(ResultStatus.TIMED_OUT, exit_code=None, error="ran past 1800 s")
    assert judge_qc(TARGET, timed_out, True).reasons == ["ran past 1800 s"]


def test_offline_is_unreachable() -> None:
    offline = result(ResultStatus.OFFLINE, exit_code=None, error="agent ConnectionLost")
    assert judge_qc(TARGET, offline, True).verdict is QcVerdict.UNREACHABLE


def test_code_blocks_cannot_be_closed_by_the_text_they_hold() -> None:
    block = fenced("echo ```\n\x1b[31mred\x1b[0m\n")
    assert block.startswith("````\n") and block.endswith("\n````\n")
    assert "\x1b" not in block


# --- the README's demo ---------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_demo_runs_the_prep_on_this_machine_and_says_where_the_reports_are(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main() == 0

    out = capsys.readouterr().out
    assert "localhost: QC " in out
    [summary_line] = [line for line in out.splitlines() if line.startswith("report (all steps): ")]
    summary = Path(summary_line.split(": ", 1)[1])
    assert summary.parent == data_dir / "reports" and summary.exists()
    assert "final report (QC reports and patch scripts): " in out
    [saved] = (data_dir / "demo-workdir").glob("DEMO-*/qc_report.txt")
    assert saved.read_text().startswith("===== QC report for ")
