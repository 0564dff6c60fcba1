"""S3 permissions the callers lack, and how S3 answers a ``GetObject`` without them.

moto grants every caller everything. Real callers often lack ``s3:ListBucket`` on the output
bucket (a least-privilege policy that grants ``s3:GetObject`` only), and then S3 answers a
``GetObject`` of a key that does not exist with ``403 AccessDenied``, not ``404 NoSuchKey``:
it will not tell a caller who may not list the bucket whether a key exists. Without
``s3:GetObject`` every read is ``403``. The world asks :meth:`S3Access.refusal` before moto
answers a ``GetObject``.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlsplit

from botocore.awsrequest import AWSPreparedRequest
from moto.s3.models import s3_backends

# Hosts of S3's own endpoints: ``<bucket>.s3.amazonaws.com``, ``<bucket>.s3.<region>...``
# (virtual-hosted) or ``s3.<region>.amazonaws.com/<bucket>/...`` (path style).
_S3_HOST_MARKERS = (".s3.", ".s3-")


class S3Access:
    """Per bucket, the permissions the callers lack. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._no_list: set[str] = set()
        self._no_get: set[str] = set()

    def deny_list_bucket(self, bucket: str) -> None:
        """Callers lack ``s3:ListBucket`` on ``bucket``: an absent key answers 403."""
        with self._lock:
            self._no_list.add(bucket)

    def deny_get_object(self, bucket: str) -> None:
        """Callers lack ``s3:GetObject`` on ``bucket``: every read answers 403."""
        with self._lock:
            self._no_get.add(bucket)

    def refusal(self, request: AWSPreparedRequest) -> str | None:
        """``AccessDenied`` when S3 would refuse this ``GetObject`` for lack of a permission,
        else None (moto answers)."""
        bucket, key = bucket_and_key(request.url)
        with self._lock:
            no_get, no_list = bucket in self._no_get, bucket in self._no_list
        if no_get or (no_list and not _exists(bucket, key)):
            return "AccessDenied"
        return None


def bucket_and_key(url: str) -> tuple[str, str]:
    """The bucket and key a virtual-hosted or path-style S3 URL names."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = unquote(parts.path).lstrip("/")
    first = host.split(".", 1)[0]
    if any(marker in host for marker in _S3_HOST_MARKERS) and first not in ("s3", ""):
        return first, path
    bucket, _, key = path.partition("/")
    return bucket, key


def _exists(bucket: str, key: str) -> bool:
    owner = s3_backends.bucket_accounts.get(bucket)
    if owner is None:
        return False
    partition, account_id = owner
    return s3_backends[account_id][partition].get_object(bucket, key) is not None
