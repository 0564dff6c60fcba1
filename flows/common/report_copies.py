"""Reports in one place: a copy of every report file in a shared destination, linked from
the run.

The destination is the worker's ``CLOUDOPS_REPORTS_DESTINATION`` setting, else the reports
destination of the run's AWS provider block: ``s3://bucket/prefix`` (written with the
credentials the AWS provider resolves, in its home environment, so a GovCloud block writes to
GovCloud) or a shared directory. Copies go under ``<prefix>/<change>/<file>`` (``adhoc`` for a
run without a change). The local file is always written first and stays.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from blocks import load_provider
from flows.common.settings import get_settings
from providers.aws.provider import AwsProvider
from providers.base import Provider, ProviderError
from providers.destinations import DestinationKind, ReportDestination

ADHOC = "adhoc"
SETTING = "CLOUDOPS_REPORTS_DESTINATION"


class ReportDestinationError(RuntimeError):
    """The reports destination is misconfigured or cannot be written; the message says which
    and what to do."""


class ReportCopy(BaseModel):
    """Where a report's copy went: as a person writes it, and a link that opens it."""

    location: str
    url: str


def named_destination(provider: Provider | None = None) -> tuple[str, str] | None:
    """The destination as named, and where it was named (the setting, or the AWS provider
    block of ``provider``); None when nothing names one."""
    setting = get_settings().reports_destination
    if setting and setting.strip():
        return setting, SETTING
    if isinstance(provider, AwsProvider) and provider.config.reports_destination:
        return provider.config.reports_destination, "the AWS provider block's reports destination"
    return None


def destination_for(provider: Provider | None = None) -> ReportDestination | None:
    """The destination report copies of a run on ``provider`` go to; None when none is named,
    ``ReportDestinationError`` when the one named is malformed."""
    named = named_destination(provider)
    if named is None:
        return None
    text, source = named
    try:
        return ReportDestination.parse(text)
    except ValueError as exc:
        raise ReportDestinationError(f"{source}: {exc}") from None


def write_copy(
    destination: ReportDestination,
    relative: str,
    content: bytes,
    provider: Provider | None = None,
    content_type: str = "text/markdown; charset=utf-8",
) -> ReportCopy:
    """Write ``content`` at ``relative`` (a key or path from ``destination.key_for``).

    S3 is written with ``provider`` when it is the AWS provider, else with the ``aws``
    provider (the one saved AWS block, or the legacy variables).
    """
    if destination.kind is DestinationKind.DIRECTORY:
        assert destination.directory is not None
        path = destination.directory / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except OSError as exc:
            raise ReportDestinationError(
                f"cannot write the report copy {path}: {exc.strerror or exc}; check that the "
                "shared directory is mounted and writable by this worker"
            ) from None
        return ReportCopy(location=str(path), url=path.resolve().as_uri())
    assert destination.bucket is not None
    location = f"s3://{destination.bucket}/{relative}"
    try:
        writer = provider if isinstance(provider, AwsProvider) else load_provider("aws")
        if not isinstance(writer, AwsProvider):
            raise ReportDestinationError(
                f"the reports destination {destination.describe()} is in S3, but the provider "
                f"{writer.name!r} cannot write to S3; name an AWS provider or a directory"
            )
        url = writer.put_object(destination.bucket, relative, content, content_type)
    except ProviderError as exc:  # credentials, AccessDenied, NoSuchBucket...: said in exc
        raise ReportDestinationError(f"cannot write the report copy {location}: {exc}") from None
    return ReportCopy(location=location, url=url)


def copy_report_file(provider: Provider, path: Path, change: str | None) -> ReportCopy | None:
    """A copy of the report file at ``path`` in the destination for ``provider``; None when no
    destination is named."""
    destination = destination_for(provider)
    if destination is None:
        return None
    relative = destination.key_for(change or ADHOC, path.name)
    return write_copy(destination, relative, path.read_bytes(), provider)
