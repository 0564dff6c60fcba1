"""Reports in one place: every report file is also written to the reports destination (S3 in
moto, or a shared directory) and the run links to the copy; the local file always stays."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import boto3
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact
from prefect.runtime import flow_run
from pydantic import SecretStr, ValidationError

from blocks import AwsProviderBlock
from flows import run_script
from flows.common.runs import RunReport, WorkflowRun
from flows.store import Store
from providers.base import Provider, Target
from tests.providers.aws.credential_fixtures import AwsWire, iam_user_keys

pytestmark = pytest.mark.usefixtures("prefect_server", "moto_aws", "data_dir")

CHANGE = "CHG0012345"
LOCALHOST = Target(instance_id="localhost", account_id="local", region="local")
MARKDOWN = "# QC results\n\n| instance | verdict |\n|---|---|\n| i-0abc | passed |\n"


def bucket(name: str, region: str) -> None:
    s3 = boto3.client(
        "s3", region_name=region, aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})


def s3_text(name: str, key: str, region: str) -> str:
    s3 = boto3.client(
        "s3", region_name=region, aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    return s3.get_object(Bucket=name, Key=key)["Body"].read().decode()


def artifacts_of(flow_run_id: UUID | str) -> dict[str, Artifact]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))])
            )
        )
    return {a.key: a for a in found if a.key}


def publish_once(provider: Provider) -> tuple[Path, str]:
    """A flow run that publishes one report the way every workflow does."""

    @flow(name="publishes-a-report")
    def publishing() -> tuple[Path, str]:
        run = WorkflowRun.begin("run-script", provider, Store.default(), CHANGE)
        path = run.publish(
            RunReport(
                filename="qc_results_CHG0012345_20261201T000000Z.md",
                markdown=MARKDOWN,
                summary_key="qc-results",
                summary_description="QC results",
            )
        )
        return path, str(flow_run.id)

    return publishing()


def test_a_gov_block_writes_the_copy_to_s3_in_govcloud_and_the_run_links_to_it(
    aws_wire: AwsWire,
) -> None:
    key_id, secret = iam_user_keys("reports-writer")
    bucket("gov-reports", "us-gov-west-1")
    block = AwsProviderBlock(
        environment="gov",
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
        reports_destination="s3://gov-reports/cloudops/",
    )

    local, flow_run_id = publish_once(block.build_provider())

    key = f"cloudops/{CHANGE}/qc_results_CHG0012345_20261201T000000Z.md"
    assert s3_text("gov-reports", key, "us-gov-west-1") == MARKDOWN
    assert local.read_text() == MARKDOWN  # the local file stays
    [put] = aws_wire.calls("PutObject")
    assert "us-gov-west-1" in put.url  # the block's partition, with the block's keys
    # A link artifact is markdown: [text](url).
    link = str(artifacts_of(flow_run_id)["qc-results-copy"].data)
    assert link.startswith(f"[s3://gov-reports/{key}](https://console.amazonaws-us-gov.com/")
    assert "/s3/object/gov-reports?region=us-gov-west-1&prefix=cloudops%2FCHG0012345%2F" in link


def test_the_setting_wins_and_a_real_workflow_copies_to_a_shared_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-reports"
    monkeypatch.setenv("CLOUDOPS_REPORTS_DESTINATION", str(shared))

    state = run_script(
        script="echo hello", targets=[LOCALHOST], provider="local", return_state=True
    )

    local = Path(state.result().report_path)
    [copy] = list((shared / "adhoc").glob("*.md"))  # no change: the adhoc folder
    assert copy.name == local.name
    assert copy.read_bytes() == local.read_bytes()
    links = [
        str(a.data)
        for a in artifacts_of(state.state_details.flow_run_id).values()
        if a.key and a.key.endswith("-copy")
    ]
    assert links == [f"[{copy}]({copy.resolve().as_uri()})"]


def test_a_copy_that_cannot_be_written_is_logged_and_the_run_still_reports(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key_id, secret = iam_user_keys("reports-writer")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID_COM", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_COM", secret)
    monkeypatch.setenv("CLOUDOPS_REPORTS_DESTINATION", "s3://no-such-bucket/reports")

    state = run_script(
        script="echo hello", targets=[LOCALHOST], provider="local", return_state=True
    )

    assert state.is_completed()
    assert Path(state.result().report_path).is_file()
    assert "cannot write the report copy s3://no-such-bucket/reports/adhoc/" in caplog.text
    assert "NoSuchBucket" in caplog.text
    assert secret not in caplog.text
    keys = artifacts_of(state.state_details.flow_run_id)
    assert not [k for k in keys if k.endswith("-copy")]


@pytest.mark.parametrize(
    ("destination", "says"),
    [
        ("reports/relative", "relative"),
        ("s3://Bad_Bucket/reports", "not an S3 bucket name"),
        ("s3://good-bucket/a/../b", "unsafe parts"),
        ("https://example.com/reports", "not a reports destination"),
    ],
)
def test_a_block_refuses_a_destination_it_could_not_use(destination: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        AwsProviderBlock(reports_destination=destination)


def test_a_malformed_setting_is_reported_by_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLOUDOPS_REPORTS_DESTINATION", "s3://Bad_Bucket")
    state = run_script(
        script="echo hello", targets=[LOCALHOST], provider="local", return_state=True
    )
    assert state.is_completed()
    assert "CLOUDOPS_REPORTS_DESTINATION: 'Bad_Bucket'" in caplog.text
    assert Path(state.result().report_path).is_file()  # the local report is there
