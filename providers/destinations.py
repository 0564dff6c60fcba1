"""Where copies of the reports go: an S3 location (``s3://bucket/prefix``) or a shared directory.

Plain data, so that the AWS provider block can refuse a bad destination when it is saved and the
flows can read the same setting (``CLOUDOPS_REPORTS_DESTINATION``) with the same rules.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict

# S3's rules for a bucket name (general purpose buckets): 3 to 63 lowercase letters, digits,
# dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_KEY_PART = re.compile(r"[A-Za-z0-9!_.*'()=+,@-]+")

EXPECTED = "use s3://<bucket>/<prefix> or the absolute path of a shared directory"


class DestinationKind(StrEnum):
    S3 = "s3"
    DIRECTORY = "directory"


class ReportDestination(BaseModel):
    """A place that keeps a copy of every report file: an S3 bucket and key prefix, or a
    directory (a shared mount)."""

    model_config = ConfigDict(frozen=True)

    kind: DestinationKind
    bucket: str | None = None
    prefix: str = ""
    directory: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ReportDestination:
        """``s3://bucket/prefix`` or an absolute directory path; ``ValueError`` otherwise."""
        value = text.strip()
        if not value:
            raise ValueError(f"the reports destination is empty; {EXPECTED}")
        if value.lower().startswith("s3://"):
            return cls._parse_s3(value)
        if "://" in value:
            raise ValueError(f"{value!r} is not a reports destination; {EXPECTED}")
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # ~user of a user that does not exist
            raise ValueError(f"{value!r} is not a usable directory; {EXPECTED}") from None
        if not path.is_absolute():
            raise ValueError(
                f"the reports directory {value!r} is relative: every worker would resolve it "
                f"from its own working directory; {EXPECTED}"
            )
        return cls(kind=DestinationKind.DIRECTORY, directory=path)

    @classmethod
    def _parse_s3(cls, value: str) -> ReportDestination:
        bucket, _, prefix = value[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                f"{bucket!r} (in {value!r}) is not an S3 bucket name: 3 to 63 lowercase letters, "
                "digits, '.' or '-'"
            )
        parts = [part for part in prefix.split("/") if part]
        bad = [part for part in parts if part in (".", "..") or not _KEY_PART.fullmatch(part)]
        if bad:
            raise ValueError(
                f"the key prefix of {value!r} has unsafe parts ({', '.join(map(repr, bad))}); "
                "use letters, digits and - _ . separated by /"
            )
        return cls(kind=DestinationKind.S3, bucket=bucket, prefix="/".join(parts))

    def key_for(self, *parts: str) -> str:
        """The object key (S3) or relative path (directory) of ``parts`` under the prefix."""
        return str(PurePosixPath(*[p for p in (self.prefix, *parts) if p]))

    def describe(self) -> str:
        """The destination as a person writes it."""
        if self.kind is DestinationKind.S3:
            return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return str(self.directory)
