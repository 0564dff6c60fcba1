"""``cloudops doctor`` against a real (temporary) Prefect server, moto for AWS, and the record
store on SQLite and PostgreSQL: one line per check, what to do about a failure, exit 1 when a
check fails, and never a secret."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate, WorkPoolCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from blocks import AwsProviderBlock, LocalProviderBlock, ProviderBlock, saved_block_slugs
from flows.store.database import head_revision
from tests.flows.cli.conftest import Cloudops
from tests.providers.aws.credential_fixtures import AwsWire, iam_user_keys

pytestmark = pytest.mark.usefixtures("prefect_server", "moto_aws", "data_dir")

POOL = "cloudops-doctor-test"
SECRET_GOV = "wrong/Secret+Visible+If+Leaked0123456789"


@pytest.fixture
def no_saved_provider_blocks() -> Iterator[None]:
    """The provider blocks other tests left on the shared server put away for this test (the
    doctor checks every saved one), and saved again after it."""
    for block_class in (AwsProviderBlock, LocalProviderBlock):
        block_class.register_type_and_schema()
    kept: list[tuple[ProviderBlock, str]] = []
    for slug in saved_block_slugs():
        type_slug, _, name = slug.partition("/")
        block_class = AwsProviderBlock if type_slug == "aws-provider" else LocalProviderBlock
        kept.append((block_class.load(name), name))
        block_class.delete(name)
    yield
    for block, name in kept:
        block.save(name, overwrite=True)


@pytest.fixture
def pool() -> Iterator[str]:
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    yield POOL
    with get_client(sync_client=True) as client:
        client.delete_work_pool(POOL)


def line(output: str, name: str) -> str:
    """The line of the check ``name``, with the fix line under it if any."""
    lines = output.splitlines()
    index = next(i for i, ln in enumerate(lines) if f" {name}:" in ln[:60])
    follow = lines[index + 1] if index + 1 < len(lines) and "→" in lines[index + 1] else ""
    return lines[index] + "\n" + follow


def legacy(monkeypatch: pytest.MonkeyPatch, environment: str, key: str, secret: str) -> None:
    monkeypatch.setenv(f"AWS_ACCESS_KEY_ID_{environment}", key)
    monkeypatch.setenv(f"AWS_SECRET_ACCESS_KEY_{environment}", secret)


@pytest.mark.usefixtures("no_saved_provider_blocks")
def test_a_missing_work_pool_fails_and_says_what_to_do(cloudops: Cloudops) -> None:
    checked = cloudops("doctor", "--pool", "no-such-pool")

    assert checked.exit_code == 1
    api = line(checked.stdout, "Prefect API")
    assert api.startswith("PASS") and str(PREFECT_API_URL.value()) in api
    assert line(checked.stdout, "block type aws-provider").startswith("PASS")
    missing = line(checked.stdout, "work pool no-such-pool")
    assert missing.startswith("FAIL") and "prefect work-pool create no-such-pool" in missing
    assert line(checked.stdout, "provider blocks").startswith("PASS  provider blocks: none saved")
    # a fresh data directory: the store is there but not migrated yet
    assert line(checked.stdout, "record store").startswith("WARN")
    assert "python -m flows.store upgrade" in line(checked.stdout, "record store")
    assert line(checked.stdout, "reports directory").startswith("PASS")
    assert "1 failed" in checked.stdout


@pytest.mark.usefixtures("no_saved_provider_blocks")
def test_credentials_per_environment_without_any_secret(
    cloudops: Cloudops, pool: str, monkeypatch: pytest.MonkeyPatch, aws_wire: AwsWire
) -> None:
    key_id, secret = iam_user_keys("doctor")
    legacy(monkeypatch, "COM", key_id, secret)
    legacy(monkeypatch, "GOV", "AKIAGOVEXAMPLE000001", SECRET_GOV)
    # com is checked first: AWS refuses its keys; gov's are accepted.
    aws_wire.fail("GetCallerIdentity", "InvalidClientTokenId", times=1, status=403)

    checked = cloudops("doctor", "--pool", pool)

    assert checked.exit_code == 1
    com = line(checked.stdout, "credentials com (no block)")
    gov = line(checked.stdout, "credentials gov (no block)")
    assert com.startswith("FAIL  credentials com (no block): refused")
    assert "InvalidClientTokenId" in com and "→ renew or correct" in com
    assert gov.startswith("PASS  credentials gov (no block): arn:aws-us-gov:")
    assert "from env" in gov
    assert line(checked.stdout, "workers").startswith("WARN")
    assert line(checked.stdout, "deployments").startswith("FAIL")
    assert secret not in checked.output and SECRET_GOV not in checked.output


@pytest.mark.usefixtures("no_saved_provider_blocks")
def test_an_environment_without_credentials_is_a_warning(cloudops: Cloudops, pool: str) -> None:
    checked = cloudops("doctor", "--pool", pool)
    gov = line(checked.stdout, "credentials gov (no block)")
    assert gov.startswith("WARN  credentials gov (no block): not configured")
    assert "AWS_ACCESS_KEY_ID_GOV" in gov


@pytest.mark.usefixtures("no_saved_provider_blocks")
def test_a_saved_block_that_no_longer_validates_fails(cloudops: Cloudops, pool: str) -> None:
    key_id, secret = iam_user_keys("doctor-block")
    AwsProviderBlock(
        environment="com", access_key_id=SecretStr(key_id), secret_access_key=SecretStr(secret)
    ).save("doctor-good", overwrite=True)
    broken = AwsProviderBlock(environment="com")
    broken.save("doctor-broken", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("doctor-broken", "aws-provider")
        client.update_block_document(
            document.id,
            BlockDocumentUpdate(data={**document.data, "default_regions": ["mars-north-1"]}),
        )
    try:
        checked = cloudops("doctor", "--pool", pool)
    finally:
        AwsProviderBlock.delete("doctor-good")
        AwsProviderBlock.delete("doctor-broken")

    assert checked.exit_code == 1
    assert line(checked.stdout, "block aws-provider/doctor-good").startswith("PASS")
    bad = line(checked.stdout, "block aws-provider/doctor-broken")
    assert bad.startswith("FAIL") and "mars-north-1" in bad
    good = line(checked.stdout, "credentials com (aws-provider/doctor-good)")
    assert good.startswith("PASS") and "from block" in good
    assert secret not in checked.output


@pytest.mark.usefixtures("no_saved_provider_blocks")
def test_the_reports_destination_is_written_to(
    cloudops: Cloudops, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, secret = iam_user_keys("doctor-reports")
    legacy(monkeypatch, "COM", key_id, secret)
    boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).create_bucket(Bucket="ops-reports")

    monkeypatch.setenv("CLOUDOPS_REPORTS_DESTINATION", "s3://ops-reports/cloudops")
    written = cloudops("doctor", "--pool", pool)
    monkeypatch.setenv("CLOUDOPS_REPORTS_DESTINATION", "s3://no-such-reports/cloudops")
    missing = cloudops("doctor", "--pool", pool)

    assert line(written.stdout, "reports destination").startswith(
        "PASS  reports destination: CLOUDOPS_REPORTS_DESTINATION: wrote "
        "s3://ops-reports/cloudops/cloudops-doctor.txt"
    )
    body = (
        boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        .get_object(Bucket="ops-reports", Key="cloudops/cloudops-doctor.txt")["Body"]
        .read()
    )
    assert body.startswith(b"written by cloudops doctor on ")
    failed = line(missing.stdout, "reports destination")
    assert failed.startswith("FAIL") and "NoSuchBucket" in failed
    assert missing.exit_code == 1


def test_without_a_prefect_api_the_rest_is_still_checked(
    cloudops: Cloudops, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    cloudops("changes", "list")  # migrates the store on first use
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        checked = cloudops("doctor")

    assert checked.exit_code == 1
    assert line(checked.stdout, "Prefect API").startswith(
        "FAIL  Prefect API: http://127.0.0.1:9/api does not answer"
    )
    assert line(checked.stdout, "work pool").startswith("SKIP")
    store = line(checked.stdout, "record store")
    assert store.startswith("PASS") and f"at {head_revision()}" in store
    assert "Traceback" not in checked.output


def test_an_unreachable_store_fails_without_its_password(
    cloudops: Cloudops, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://ops:s3cret-pw@127.0.0.1:9/cloudops")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        checked = cloudops("doctor")
    store = line(checked.stdout, "record store")
    assert store.startswith("FAIL") and "ops:***@127.0.0.1:9" in store
    assert "s3cret-pw" not in checked.output
