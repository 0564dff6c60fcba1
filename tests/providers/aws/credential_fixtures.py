"""Fixtures for the credential tests: an AWS (moto) with no ambient credentials, and a tap on
every HTTP request botocore sends, which can also answer in AWS's place with an error.

Made visible to this folder's tests by ``conftest.py``; kept in their own module so that
fixtures of other test modules in the folder can sit next to them without edits here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws


@pytest.fixture
def no_ambient_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AWS variables, empty AWS config files, no instance metadata, and a working directory
    without a ``.env``: the only credentials are the ones a test sets up."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    config_file = tmp_path / "aws-config"
    credentials_file = tmp_path / "aws-credentials"
    config_file.write_text("")
    credentials_file.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def moto_aws(no_ambient_aws: Path) -> Iterator[None]:
    """moto in place of AWS, without the fake ``AWS_ACCESS_KEY_ID`` moto would otherwise put in
    the environment (that would give boto3's default chain credentials in every test)."""
    with mock_aws(config={"core": {"mock_credentials": False}}):
        yield


@dataclass(frozen=True)
class SentRequest:
    """One HTTP attempt botocore made (retries are separate attempts)."""

    service: str
    operation: str
    url: str
    params: dict[str, str]


@dataclass
class AwsWire:
    """Sees every request before moto does, and can answer some with an AWS error."""

    sent: list[SentRequest] = field(default_factory=list)
    _faults: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def fail(self, operation: str, code: str, *, times: int = 1, status: int = 400) -> None:
        """Answer the next ``times`` attempts of ``operation`` with the AWS error ``code``."""
        self._faults.setdefault(operation, []).extend([(code, status)] * times)

    def calls(self, operation: str | None = None) -> list[SentRequest]:
        return [r for r in self.sent if operation is None or r.operation == operation]

    def on_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        body = request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        params = {k: v[0] for k, v in parse_qs(text).items()}
        self.sent.append(SentRequest(service, operation, request.url, params))
        queued = self._faults.get(operation)
        if queued:
            code, status = queued.pop(0)
            return _query_error(request.url, code, status)
        return None


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _query_error(url: str, code: str, status: int) -> AWSResponse:
    """An error as the query-protocol services (STS, IAM) send it."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message>"
        "</Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()
    return AWSResponse(url, status, {"Content-Type": "text/xml"}, _Body(body))


@pytest.fixture
def aws_wire(monkeypatch: pytest.MonkeyPatch) -> AwsWire:
    """An ``AwsWire`` on every botocore session created during the test. It is registered
    first on ``before-send``, ahead of moto's own handler, which answers when it does not."""
    wire = AwsWire()
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [
            ("before-send", wire.on_send, botocore.handlers.REGISTER_FIRST),
            *botocore.handlers.BUILTIN_HANDLERS,
        ],
    )
    return wire


@dataclass
class ManualClock:
    """A clock the test moves by hand; starts at the real time, as moto stamps expiries with
    the real time."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def iam_user_keys(user_name: str) -> tuple[str, str]:
    """Create an IAM user in moto's default account and return its (key id, secret)."""
    iam = boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    iam.create_user(UserName=user_name)
    key = iam.create_access_key(UserName=user_name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]
