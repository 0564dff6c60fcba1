"""What a botocore request says about itself, and how to answer one the way AWS would.

The emulator sits in botocore's ``before-send`` event, so it sees the prepared HTTP request
(url, headers, body) and answers with a ``botocore.awsrequest.AWSResponse``. Answering at the
HTTP level keeps botocore's own parsing and retry logic in the loop: a throttling answer here
is retried by botocore exactly as a real one would be.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.core.botocore_stubber import MockRawResponse

_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_REGION_IN_HOST = re.compile(r"(?:^|\.)([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d)\.")

# Wire protocol of the services a test is likely to touch; every other service speaks JSON.
_PROTOCOLS = {"sts": "query", "iam": "query", "ec2": "ec2", "s3": "rest-xml"}

# The code each service answers with when it throttles a caller.
THROTTLE_CODES = {
    "ssm": "ThrottlingException",
    "sts": "Throttling",
    "iam": "Throttling",
    "ec2": "RequestLimitExceeded",
    "s3": "SlowDown",
    "organizations": "TooManyRequestsException",
}


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request botocore is about to send."""

    service: str
    operation: str
    host: str
    access_key_id: str | None
    region: str
    body: bytes

    def json_body(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def form_body(self) -> dict[str, str]:
        pairs = parse_qs(self.body.decode(), keep_blank_values=True)
        return {key: values[0] for key, values in pairs.items()}


def read_request(event_name: str, request: AWSPreparedRequest) -> WireRequest:
    """Service and operation from the event name (``before-send.<service>.<Operation>``), the
    region from the endpoint host (or the signature's scope for a custom endpoint), and the
    access key id from the SigV4 ``Authorization`` header."""
    _, service, operation = [*event_name.split(".", 2), "", ""][:3]
    host = urlsplit(request.url).hostname or ""
    authorization = request.headers.get("Authorization") or ""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("ascii", errors="replace")
    scope = _CREDENTIAL_SCOPE.search(authorization)
    access_key_id = scope.group(1) if scope else None
    in_host = _REGION_IN_HOST.search(host)
    if in_host:
        region = in_host.group(1)
    elif scope:
        region = scope.group(2)
    else:
        region = "us-east-1"
    return WireRequest(service, operation, host, access_key_id, region, _body_bytes(request.body))


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    # Streaming bodies (S3 uploads) are never read here: the emulator only parses SSM and STS.
    return b""


def protocol_of(service: str) -> str:
    return _PROTOCOLS.get(service, "json")


def json_response(request: AWSPreparedRequest, payload: dict[str, Any]) -> AWSResponse:
    """A 200 answer of a JSON-protocol service such as SSM."""
    return _response(
        request, 200, {"content-type": "application/x-amz-json-1.1"}, json.dumps(payload)
    )


def error_response(
    request: AWSPreparedRequest, service: str, code: str, message: str, status: int = 400
) -> AWSResponse:
    """An error answer in the wire format of ``service``, as AWS would send it."""
    protocol = protocol_of(service)
    msg = escape(message)
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message})
        return _response(request, status, {"content-type": "application/x-amz-json-1.1"}, body)
    if protocol == "query":
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{msg}</Message></Error>"
            f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
    elif protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{msg}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
        )
    else:
        body = (
            f"<Error><Code>{code}</Code><Message>{msg}</Message>"
            f"<RequestId>{uuid.uuid4()}</RequestId></Error>"
        )
    return _response(request, status, {"content-type": "text/xml"}, body)


def throttle_response(request: AWSPreparedRequest, service: str) -> AWSResponse:
    """The answer AWS gives a caller over its request rate."""
    code = THROTTLE_CODES.get(service, "ThrottlingException")
    status = 503 if code == "SlowDown" else 400
    return error_response(request, service, code, "Rate exceeded", status)


def _response(
    request: AWSPreparedRequest, status: int, headers: dict[str, str], body: str
) -> AWSResponse:
    headers = {**headers, "x-amzn-requestid": str(uuid.uuid4())}
    return AWSResponse(request.url, status, headers, MockRawResponse(body))
