"""run-script end to end on the local provider, through a real (temporary) Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import run_script
from flows.changes import ChangeFileError
from flows.common.targets import TargetSelectionError
from flows.store import Store
from providers.base import ResultStatus, Target
from tests.prefect_artifacts import read_artifacts

pytestmark = pytest.mark.usefixtures("prefect_server")

LOCALHOST = Target(instance_id="localhost", account_id="local", region="local")


def test_bundled_script_runs_for_real_and_is_reported(data_dir: Path) -> None:
    result = run_script(script_name="linux/host_facts.sh", provider="local", discovery={})

    [only] = result.batch.results
    assert only.status is ResultStatus.SUCCESS
    assert "kernel: " in only.stdout and "hostname: " in only.stdout
    report = Path(result.report_path)
    assert report.parent == data_dir / "reports"
    assert "host_facts.sh" in report.read_text()


def test_parameters_reach_the_script_quoted(data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"x'; touch {marker}; echo '$(touch {marker})`touch {marker}`"

    result = run_script(
        script='printf "%s" "$GREETING"',
        parameters={"GREETING": hostile},
        targets=[LOCALHOST],
        provider="local",
    )

    [only] = result.batch.results
    assert only.stdout == hostile
    assert not marker.exists()


def test_exit_code_and_failure_are_reported(data_dir: Path) -> None:
    result = run_script(script="echo oops >&2; exit 3", targets=[LOCALHOST], provider="local")

    [only] = result.batch.results
    assert only.status is ResultStatus.FAILED
    assert only.exit_code == 3
    assert result.batch.status.value == "failed"


def test_run_is_recorded_in_the_store(data_dir: Path) -> None:
    result = run_script(script="echo recorded", targets=[LOCALHOST], provider="local")

    store = Store.default()
    executions = store.latest_executions(None, "run-script", "inline")
    assert executions["localhost"].stdout.strip() == "recorded"
    assert result.batch.success_count == 1


def test_no_or_several_target_sources_are_refused_before_anything_runs(data_dir: Path) -> None:
    with pytest.raises(TargetSelectionError, match="exactly one source of targets"):
        run_script(script="echo never", provider="local")
    with pytest.raises(TargetSelectionError, match="exactly one source of targets"):
        run_script(script="echo never", provider="local", targets=[LOCALHOST], discovery={})


def test_artifacts_are_published(data_dir: Path) -> None:
    state = run_script(
        script="echo artifact", targets=[LOCALHOST], provider="local", return_state=True
    )

    artifacts = read_artifacts(flow_run_id=state.state_details.flow_run_id)
    keys = {a.key for a in artifacts}
    assert {"run-script-results", "run-script-summary", "run-script-progress"} <= keys
    progress = [a for a in artifacts if a.key == "run-script-progress"]
    assert any(a.data == 100.0 for a in progress)


def test_every_line_of_each_instance_output_reaches_the_report_and_an_artifact(
    data_dir: Path,
) -> None:
    script = "for i in $(seq 1 40); do echo line-$i; done; echo warned >&2"
    state = run_script(script=script, targets=[LOCALHOST], provider="local", return_state=True)
    result = state.result()

    report = Path(result.report_path).read_text()
    assert "<details><summary>localhost (local/local): success, exit code 0</summary>" in report
    assert "<pre>line-1\n" in report and "line-40</pre>" in report and "warned" in report
    [output] = read_artifacts(
        flow_run_id=state.state_details.flow_run_id, keys=["run-script-output"]
    )
    assert "line-40" in str(output.data)


@pytest.mark.parametrize("change_csv", ["/proc/self/mem", "/etc/passwd", "../../etc/hosts"])
def test_a_change_file_outside_the_changes_directory_is_refused_before_anything_runs(
    data_dir: Path, change_csv: str
) -> None:
    with pytest.raises(ChangeFileError, match="is outside the changes directory") as refused:
        run_script(script="echo never", change_csv=change_csv, provider="local")

    assert str(data_dir / "changes") in str(refused.value)
    assert not (data_dir / "reports").exists()


def test_a_change_file_in_the_changes_directory_is_read_and_stored(data_dir: Path) -> None:
    (data_dir / "changes").mkdir(parents=True)
    (data_dir / "changes" / "CHG0077.csv").write_text(
        "change_number,instance_id,account_id,region\nCHG0077,i-0123456789abcdef0,"
        "111111111111,us-east-1\n"
    )

    result = run_script(script="echo never here", change_csv="CHG0077.csv", provider="local")

    assert result.change_number == "CHG0077"
    stored = Store.default().load_change("CHG0077")
    assert stored is not None
    assert [t.instance_id for t in stored.targets] == ["i-0123456789abcdef0"]
