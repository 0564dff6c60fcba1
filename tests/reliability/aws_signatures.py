"""Which credentials really signed a test's AWS requests.

The SSM emulator records the access key id of each request, but not the secret access key
(which never travels) nor the session token. ``SignatureTap`` keeps a copy of every request
that botocore sends while it is installed, and checks its SigV4 signature against a candidate
secret key: a test that plants a recognisable secret can then prove the secret was used,
so that finding it nowhere afterwards means something.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.credentials import Credentials
from botocore.handlers import BUILTIN_HANDLERS

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<headers>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SignedRequest(NamedTuple):
    """A copy of one request as botocore sent it."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    operation: str

    @property
    def access_key_id(self) -> str | None:
        match = _AUTHORIZATION.match(self.headers.get("authorization", ""))
        return match["key"] if match else None

    @property
    def session_token(self) -> str | None:
        return self.headers.get("x-amz-security-token")

    def signed_with(self, secret_access_key: str) -> bool:
        """Whether this request's SigV4 signature was made with ``secret_access_key``."""
        match = _AUTHORIZATION.match(self.headers.get("authorization", ""))
        if match is None:
            return False
        # Only the headers that were signed: botocore adds others (Content-Length) afterwards,
        # and SigV4Auth itself derives the host header from the URL.
        names = match["headers"].split(";")
        signed = {name: self.headers[name] for name in names if name in self.headers}
        request = AWSRequest(method=self.method, url=self.url, data=self.body, headers=signed)
        request.context["timestamp"] = self.headers["x-amz-date"]
        auth = SigV4Auth(
            Credentials(match["key"], secret_access_key), match["service"], match["region"]
        )
        string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
        return auth.signature(string_to_sign, request) == match["signature"]


class SignatureTap:
    """Copies of the requests sent by botocore sessions created while the tap is installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[SignedRequest] = []
        self._entry = ("before-send", self._record)

    def _record(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> None:
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = b""  # nothing, or a stream (uploads), which no test here checks
        copy = SignedRequest(
            method=request.method,
            url=request.url,
            headers={k.lower(): _text(v) for k, v in request.headers.items()},
            body=body,
            operation=event_name.rsplit(".", 1)[-1],
        )
        with self._lock:
            self._requests.append(copy)
        # None: the emulator (or moto) answers; botocore calls every before-send handler.
        return None

    @property
    def requests(self) -> list[SignedRequest]:
        with self._lock:
            return list(self._requests)

    def by_key(self, access_key_id: str) -> list[SignedRequest]:
        """The requests signed under ``access_key_id``."""
        return [r for r in self.requests if r.access_key_id == access_key_id]

    @contextmanager
    def installed(self) -> Iterator[SignatureTap]:
        """Tap the botocore sessions created inside the ``with`` block."""
        BUILTIN_HANDLERS.append(self._entry)
        try:
            yield self
        finally:
            BUILTIN_HANDLERS.remove(self._entry)
