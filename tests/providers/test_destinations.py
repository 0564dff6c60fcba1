"""Reports destinations as written in a block or a setting: S3 or an absolute directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.destinations import DestinationKind, ReportDestination
from providers.partitions import COMMERCIAL, GOVCLOUD


def test_an_s3_destination_keeps_its_bucket_and_a_clean_prefix() -> None:
    destination = ReportDestination.parse(" s3://ops-reports/cloudops//prod/ ")
    assert (destination.kind, destination.bucket, destination.prefix) == (
        DestinationKind.S3,
        "ops-reports",
        "cloudops/prod",
    )
    assert destination.key_for("CHG1", "qc.md") == "cloudops/prod/CHG1/qc.md"
    assert destination.describe() == "s3://ops-reports/cloudops/prod"
    assert ReportDestination.parse("s3://ops-reports").key_for("adhoc", "r.md") == "adhoc/r.md"


def test_a_directory_must_be_absolute(tmp_path: Path) -> None:
    destination = ReportDestination.parse(str(tmp_path))
    assert (destination.kind, destination.directory) == (DestinationKind.DIRECTORY, tmp_path)
    with pytest.raises(ValueError, match="relative"):
        ReportDestination.parse("reports")


@pytest.mark.parametrize("bad", ["", "s3://", "s3://a", "s3://UPPER/x", "s3://b..c/x", "ftp://x/y"])
def test_what_is_no_destination_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"s3://<bucket>/<prefix>|bucket name"):
        ReportDestination.parse(bad)


def test_console_links_open_in_the_partition_of_the_bucket() -> None:
    assert COMMERCIAL.s3_console_url("b", "p/CHG 1/r.md", "us-east-1") == (
        "https://console.aws.amazon.com/s3/object/b?region=us-east-1&prefix=p%2FCHG%201%2Fr.md"
    )
    assert GOVCLOUD.s3_console_url("b", "r.md", "us-gov-west-1").startswith(
        "https://console.amazonaws-us-gov.com/s3/object/b?"
    )
