"""The post flow's own logic without a server: parameters, prep records read back from a store,
the comparison with them, the verdict on each command result, and the report.

The prep records here are written by hand through the store's API (the end-to-end test uses
real ones); everything else is the code the flow runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.common.runs import Tally
from flows.common.targets import distinct_targets
from flows.linux_patching.drift import boot_moment, compare_with_prep
from flows.linux_patching.post.parameters import (
    PostParameterError,
    PostParameters,
    validate_post_parameters,
)
from flows.linux_patching.post.report import drift_rows, post_report_markdown
from flows.linux_patching.post.result import PostResult
from flows.linux_patching.post_check import SUMMARY_BEGIN, SUMMARY_END
from flows.linux_patching.post_verdict import (
    PostVerdict,
    judge_post,
    planned_target,
    post_script,
    post_tally,
)
from flows.linux_patching.prep_record import (
    PREP_WORKFLOW,
    PrepRecord,
    StagedInstance,
    load_prep_records,
)
from flows.linux_patching.qc_report import QcReport
from flows.parsers import AgentState, KernelTargetSource, parse_post_report
from flows.store import Store
from providers.base import BatchStatus, Platform, ResultStatus, ScriptResult, Target

CHANGE = "CHG0012345"
BEFORE = "4.18.0-553.5.1.el8_10.x86_64"
STAGED = "4.18.0-553.45.1.el8_10"
AFTER = STAGED + ".x86_64"
PREP_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CHECKED_AT = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
WEB1 = Target(instance_id="i-0123456789abcdef0", account_id="111111111111", region="us-east-1")
WEB2 = Target(instance_id="i-0123456789abcdef1", account_id="111111111111", region="us-east-1")
WIN = Target(
    instance_id="i-0123456789abcdef2",
    account_id="111111111111",
    region="us-east-1",
    platform=Platform.WINDOWS,
)


def post_output(**values: str) -> str:
    """What post_qc.sh prints: some human text, then its summary block."""
    summary = {
        "SUMMARY_VERSION": "1",
        "HOSTNAME": "web-01",
        "CHECKED_AT": "2026-11-26T04:00:00+0000",
        "LAST_BOOT": "2026-11-26T03:55:00",
        "UPTIME_SECONDS": "300",
        "KERNEL_RUNNING": AFTER,
        "KERNEL_TARGET": STAGED,
        "KERNEL_TARGET_SOURCE": "patchme",
        "AGENT_FALCON_SENSOR": "running",
        "AGENT_BESCLIENT": "running",
        "AGENT_ENLINUXPC": "not_installed",
        "AGENT_SFTD": "not_installed",
        "LVM_CHECKED": "yes",
        "PKG_MANAGER": "dnf",
        "PKG_TRANSACTIONS_TODAY": "1",
        **values,
    }
    block = "\n".join(f"{key}={value}" for key, value in summary.items())
    return f"===== Post-patch QC for web-01 =====\n{SUMMARY_BEGIN}\n{block}\n{SUMMARY_END}\n"


def qc_report(kernel: str = BEFORE, crowdstrike: bool = True, passed: bool = True) -> QcReport:
    return QcReport(
        hostname="web-01",
        kernel=kernel,
        crowdstrike_running=crowdstrike,
        passed=passed,
        failure_reasons=[] if passed else ["disk space check FAILED"],
    )


def ran(target: Target, stdout: str, status: ResultStatus = ResultStatus.SUCCESS) -> ScriptResult:
    return ScriptResult(
        instance_id=target.instance_id,
        account_id=target.account_id,
        region=target.region,
        status=status,
        exit_code=0 if status is ResultStatus.SUCCESS else 1,
        stdout=stdout,
        command_id="cmd-1",
        started_at=CHECKED_AT - timedelta(seconds=5),
        ended_at=CHECKED_AT,
    )


PARAMS = PostParameters(
    change_number=CHANGE, workdir="/root", target_kernel=None, timeout_seconds=900
)


# --- Parameters ----------------------------------------------------------------------------------


def test_every_bad_parameter_is_listed_at_once() -> None:
    with pytest.raises(PostParameterError) as refused:
        validate_post_parameters(
            change_number="CHG 1",
            workdir="/root/../etc",
            target_kernel="$(reboot)",
            timeout_seconds=5,
        )

    problems = refused.value.problems
    assert len(problems) == 4
    assert [p.split(" ", 1)[0] for p in problems] == [
        "change_number:",
        "workdir",
        "target_kernel:",
        "timeout_seconds",
    ]


def test_good_parameters_are_normalised_and_quoted_into_the_script() -> None:
    params = validate_post_parameters(
        change_number=" CHG0012345 ",
        workdir="/var/tmp/cloudops",
        target_kernel="kernel-4.18.0-553.45.1.el8_10.x86_64",
        timeout_seconds=900,
    )

    assert params.change_number == CHANGE
    assert params.target_kernel == STAGED
    script = post_script(
        params.change_number, params.workdir, params.target_kernel, KernelTargetSource.PARAMETER
    )
    assert "export CHANGE_NUMBER=CHG0012345\n" in script
    assert "export WORKDIR=/var/tmp/cloudops\n" in script
    assert f"export TARGET_KERNEL={STAGED}\n" in script
    assert "export TARGET_KERNEL_SOURCE=parameter\n" in script
    assert "TARGET_KERNEL=" not in post_script(
        params.change_number, params.workdir, None, KernelTargetSource.NONE
    )


def test_the_staged_kernel_of_the_prep_record_comes_before_the_parameter() -> None:
    params = PARAMS.model_copy(update={"target_kernel": "4.18.0-553.50.1.el8_10"})
    prep = PrepRecord(staged_kernel=STAGED)

    assert planned_target(WEB1, prep, params.target_kernel) == (STAGED, KernelTargetSource.PREP)
    assert planned_target(WEB1, PrepRecord(), params.target_kernel) == (
        "4.18.0-553.50.1.el8_10",
        KernelTargetSource.PARAMETER,
    )
    assert planned_target(WEB1, None, PARAMS.target_kernel) == (None, KernelTargetSource.NONE)
    assert planned_target(WIN, prep, params.target_kernel) == (None, KernelTargetSource.NONE)


def test_a_prep_record_that_is_not_a_kernel_version_never_becomes_a_target() -> None:
    params = PARAMS.model_copy(update={"target_kernel": "4.18.0-553.50.1.el8_10"})
    tampered = PrepRecord(staged_kernel='4.18.0"; reboot; echo "')

    assert planned_target(WEB1, tampered, params.target_kernel) == (
        "4.18.0-553.50.1.el8_10",
        KernelTargetSource.PARAMETER,
    )


def test_an_instance_listed_twice_is_checked_once() -> None:
    assert distinct_targets([WEB1, WEB2, WEB1]) == [WEB1, WEB2]


# --- Prep records --------------------------------------------------------------------------------


def _record_prep_step(
    store: Store,
    step: str,
    results: list[ScriptResult],
    parsed: dict[str, dict[str, object]],
) -> None:
    run_id = store.start_run("prep-flow-run", PREP_WORKFLOW, step, "aws", CHANGE)
    store.record_results(run_id, results, parsed=parsed)
    store.finish_run(run_id, "partial", success_count=1, failure_count=1)


def test_prep_records_are_read_back_per_instance(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    qc_ok = ran(WEB1, "qc output").model_copy(update={"started_at": PREP_AT})
    offline = ScriptResult.without_running(WEB2, ResultStatus.OFFLINE, "agent ConnectionLost")
    _record_prep_step(
        store,
        "initial_qc",
        [qc_ok, offline],
        {WEB1.instance_id: qc_report().model_dump(mode="json")},
    )
    staged = StagedInstance(
        instance_id=WEB1.instance_id,
        group="RHEL8.10 - Kernel 4.18.0-553",
        kernel=STAGED,
        status=ResultStatus.SUCCESS,
        staged_kernel=STAGED,
    )
    _record_prep_step(
        store,
        "stage_kernels",
        [ran(WEB1, "staged")],
        {WEB1.instance_id: staged.model_dump(mode="json")},
    )

    records = load_prep_records(store, CHANGE)

    assert set(records) == {WEB1.instance_id, WEB2.instance_id}
    web1 = records[WEB1.instance_id]
    assert web1.qc_before == "passed"
    assert web1.qc_at == PREP_AT
    assert web1.qc_report is not None and web1.qc_report.kernel == BEFORE
    assert web1.staged_kernel == STAGED
    web2 = records[WEB2.instance_id]
    assert web2.qc_before == "unreachable"
    assert web2.qc_report is None and web2.staged_kernel is None
    assert load_prep_records(store, "CHG-OTHER") == {}


def test_a_staging_that_wrote_another_kernel_gives_no_target(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    wrong = StagedInstance(
        instance_id=WEB1.instance_id,
        group="RHEL8.10 - Kernel 4.18.0-553",
        kernel=STAGED,
        status=ResultStatus.SUCCESS,
        staged_kernel="4.18.0-553.8.1.el8_10",
        error="patchme.sh was written but its newkernel line says another kernel",
    )
    _record_prep_step(
        store, "stage_kernels", [ran(WEB1, "")], {WEB1.instance_id: wrong.model_dump(mode="json")}
    )

    [record] = load_prep_records(store, CHANGE).values()

    assert record.staged_kernel is None
    assert record.staging_problem == wrong.error
    assert record.qc_before == "not recorded"
    assert planned_target(WEB1, record, PARAMS.target_kernel) == (None, KernelTargetSource.NONE)


# --- Comparison ----------------------------------------------------------------------------------


def test_a_new_kernel_means_patched_and_rebooted() -> None:
    report = parse_post_report(post_output())
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report())

    drift = compare_with_prep(report, prep, CHECKED_AT, change_number=CHANGE)

    assert drift.prep_record
    assert (drift.kernel_before, drift.kernel_after, drift.kernel_target) == (BEFORE, AFTER, STAGED)
    assert drift.kernel_target_source is KernelTargetSource.PATCHME
    assert drift.kernel_changed is True and drift.rebooted is True
    assert drift.booted_at == CHECKED_AT - timedelta(seconds=300)
    assert drift.crowdstrike_before is True
    assert drift.agents_after["falcon-sensor"] is AgentState.RUNNING
    assert drift.qc_before == "passed"


def test_same_kernel_tells_a_reboot_from_the_uptime() -> None:
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report())
    rebooted_on_old = parse_post_report(post_output(KERNEL_RUNNING=BEFORE, UPTIME_SECONDS="600"))
    ten_days = parse_post_report(post_output(KERNEL_RUNNING=BEFORE, UPTIME_SECONDS="864000"))

    rebooted = compare_with_prep(rebooted_on_old, prep, CHECKED_AT, change_number=CHANGE)
    untouched = compare_with_prep(ten_days, prep, CHECKED_AT, change_number=CHANGE)

    assert rebooted.kernel_changed is False and rebooted.rebooted is True
    assert untouched.kernel_changed is False and untouched.rebooted is False
    assert "still on the kernel it ran at prep time: not patched yet" in untouched.notes


def test_without_uptime_the_boot_time_uses_the_hosts_own_offset() -> None:
    report = parse_post_report(
        post_output(
            UPTIME_SECONDS="unknown",
            CHECKED_AT="2026-11-26T06:00:00+0200",
            LAST_BOOT="2026-11-26T05:30:00",
        )
    )

    assert boot_moment(report, CHECKED_AT) == datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    no_offset = report.model_copy(update={"checked_at": None})
    assert boot_moment(no_offset, CHECKED_AT) is None
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_report=qc_report(kernel=AFTER))
    assert compare_with_prep(no_offset, prep, None, change_number=CHANGE).rebooted is None


def test_an_instance_without_prep_record_is_compared_with_nothing() -> None:
    report = parse_post_report(post_output())

    drift = compare_with_prep(report, None, CHECKED_AT, change_number=CHANGE)

    assert not drift.prep_record
    assert drift.qc_before == "no prep record"
    assert drift.kernel_before is None and drift.rebooted is None
    assert drift.kernel_after == AFTER
    assert any(CHANGE in note and "no prep record" in note for note in drift.notes)


# --- Verdict -------------------------------------------------------------------------------------


def test_verdicts_follow_the_report_and_the_command() -> None:
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report())
    planned = (STAGED, KernelTargetSource.PREP)

    passed = judge_post(WEB1, ran(WEB1, post_output()), prep, planned, CHANGE)
    mismatch = judge_post(
        WEB1, ran(WEB1, post_output(KERNEL_RUNNING=BEFORE)), prep, planned, CHANGE
    )
    bigfix_down = judge_post(
        WEB1, ran(WEB1, post_output(AGENT_BESCLIENT="stopped")), prep, planned, CHANGE
    )
    garbage = judge_post(WEB1, ran(WEB1, "bash: line 1: syntax error"), prep, planned, CHANGE)
    crashed = judge_post(
        WEB1,
        ran(WEB1, "", ResultStatus.FAILED).model_copy(update={"stderr": "Segmentation fault"}),
        prep,
        planned,
        CHANGE,
    )
    timed_out = judge_post(WEB1, ran(WEB1, "", ResultStatus.TIMED_OUT), prep, planned, CHANGE)
    offline = judge_post(
        WEB2,
        ScriptResult.without_running(WEB2, ResultStatus.OFFLINE, "agent ConnectionLost"),
        None,
        planned,
        CHANGE,
    )

    assert passed.verdict is PostVerdict.PASSED and passed.reasons == []
    assert mismatch.verdict is PostVerdict.FAILED
    assert mismatch.reasons == [f"Kernel mismatch: running {BEFORE}, expected {STAGED}"]
    assert bigfix_down.verdict is PostVerdict.FAILED
    assert "BigFix (besclient) is installed but not running" in bigfix_down.reasons[0]
    assert garbage.verdict is PostVerdict.CHECK_ERROR and garbage.report is None
    assert "No post-check summary block" in garbage.reasons[0]
    assert crashed.verdict is PostVerdict.CHECK_ERROR and crashed.report is None
    assert crashed.reasons == [
        "post_qc.sh exited with code 1 (Segmentation fault); read the command output on the "
        "instance and run the post check again"
    ]
    assert timed_out.verdict is PostVerdict.CHECK_ERROR
    assert offline.verdict is PostVerdict.UNREACHABLE
    assert offline.reasons == ["agent ConnectionLost"]
    assert offline.drift.kernel_target == STAGED and not offline.drift.prep_record


def test_a_required_agent_lost_since_prep_fails_with_its_prep_state() -> None:
    before = qc_report().model_copy(
        update={"facts": {"AGENT_FALCON_SENSOR": "running", "AGENT_BESCLIENT": "stopped"}}
    )
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=before)
    planned = (STAGED, KernelTargetSource.PREP)

    removed = judge_post(
        WEB1,
        ran(
            WEB1, post_output(AGENT_FALCON_SENSOR="not_installed", AGENT_BESCLIENT="not_installed")
        ),
        prep,
        planned,
        CHANGE,
    )
    not_required = judge_post(
        WEB1,
        ran(WEB1, post_output(AGENT_FALCON_SENSOR="not_installed")),
        prep,
        planned,
        CHANGE,
        required_agents=("besclient",),
    )

    assert removed.verdict is PostVerdict.FAILED
    assert [r.split(":")[0] for r in removed.reasons] == [
        "CrowdStrike (falcon-sensor) was running at prep QC and is not installed now",
        "BigFix (besclient) was installed but not running at prep QC and is not installed now",
    ]
    assert removed.drift.agents_before["falcon-sensor"] is AgentState.RUNNING
    assert not_required.verdict is PostVerdict.PASSED


def test_the_linux_patchers_report_gives_crowdstrike_alone_as_before() -> None:
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_report=qc_report(crowdstrike=True))

    assert prep.agents_before == {"falcon-sensor": AgentState.RUNNING}


def test_an_instance_whose_prep_qc_failed_is_not_patched_on_purpose() -> None:
    prep = PrepRecord(
        qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report(passed=False)
    )
    planned = planned_target(WEB1, prep, None)

    judged = judge_post(WEB1, ran(WEB1, post_output(KERNEL_TARGET="")), prep, planned, CHANGE)

    assert judged.verdict is PostVerdict.NOT_PATCHED_PREP_FAILED
    assert judged.reasons == [
        f"not patched: the prep QC of change {CHANGE} failed on this instance (disk space "
        "check FAILED), so no kernel was staged and the change left it as it was"
    ]
    assert post_tally([judged]) == Tally(0, 0)


def test_the_post_tally_counts_windows_as_neither() -> None:
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report())
    planned = (STAGED, KernelTargetSource.PREP)
    passed = judge_post(WEB1, ran(WEB1, post_output()), prep, planned, CHANGE)
    failed = judge_post(WEB2, ran(WEB2, post_output(KERNEL_RUNNING=BEFORE)), None, planned, CHANGE)
    windows = judge_post(
        WIN,
        ScriptResult.without_running(WIN, ResultStatus.SKIPPED, "Windows server"),
        None,
        (None, KernelTargetSource.NONE),
        CHANGE,
    )

    assert windows.verdict is PostVerdict.NOT_APPLICABLE
    assert post_tally([passed, windows]) == Tally(1, 0)
    assert post_tally([passed, windows]).status is BatchStatus.SUCCESS
    assert post_tally([passed, failed, windows]).status is BatchStatus.PARTIAL
    assert post_tally([failed]).status is BatchStatus.FAILED


# --- Report --------------------------------------------------------------------------------------


def test_the_report_says_what_failed_what_drifted_and_who_had_no_prep_record() -> None:
    prep = PrepRecord(qc_status=ResultStatus.SUCCESS, qc_at=PREP_AT, qc_report=qc_report())
    planned = (STAGED, KernelTargetSource.PREP)
    result = PostResult(
        change_number=CHANGE,
        provider="aws",
        flow_run="calm-otter",
        workdir="/root",
        target_kernel=None,
        instances=[
            judge_post(WEB1, ran(WEB1, post_output()), prep, planned, CHANGE),
            judge_post(WEB2, ran(WEB2, post_output(KERNEL_RUNNING=BEFORE)), None, planned, CHANGE),
        ],
    )

    markdown = post_report_markdown(result)
    rows = {row["instance"]: row for row in drift_rows(result.instances)}

    assert markdown.startswith(f"# Linux post-patching QC: {CHANGE}")
    assert "- instances: 2 (1 passed, 1 failed)" in markdown
    assert f"- no prep record for: {WEB2.instance_id}" in markdown
    assert (
        f"- `{WEB2.instance_id}` web-01 (111111111111/us-east-1) (failed): "
        f"Kernel mismatch: running {BEFORE}, expected {STAGED}" in markdown
    )
    assert rows[WEB1.instance_id]["kernel before"] == BEFORE
    assert rows[WEB1.instance_id]["kernel after"] == AFTER
    assert rows[WEB1.instance_id]["rebooted"] == "yes"
    assert rows[WEB1.instance_id]["CrowdStrike before"] == "running"
    assert rows[WEB1.instance_id]["CrowdStrike after"] == "running"
    assert rows[WEB2.instance_id]["QC before"] == "no prep record"
    assert rows[WEB2.instance_id]["rebooted"] == "unknown"
