"""An EC2 instance metadata service (IMDSv2) on a local port: the instance role of a worker.

botocore's own credential chain reaches it through ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, as
on an EC2 instance: a session token first (``PUT /latest/api/token``), then the role's name
and its credentials, and the placement (``availability-zone``) that tells the region. Only
the paths botocore asks for are served; each request is kept so a test can see what was read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN = "fake-imds-session-token"
_CREDENTIALS = "/latest/meta-data/iam/security-credentials/"
_ZONE = "/latest/meta-data/placement/availability-zone"


@dataclass
class InstanceRole:
    """What the metadata service hands out: a role's keys, in an instance of ``region``."""

    role_name: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    region: str
    paths: list[str] = field(default_factory=list)

    def answer(self, method: str, path: str, token: str | None) -> tuple[int, str]:
        self.paths.append(f"{method} {path}")
        path = path.rstrip("/") + ("/" if path.endswith("/") else "")
        if method == "PUT":
            return (200, _TOKEN) if path == "/latest/api/token" else (404, "")
        if token != _TOKEN:
            return 401, ""
        if path == _CREDENTIALS:
            return 200, self.role_name
        if path == _CREDENTIALS + self.role_name:
            expiry = datetime.now(UTC) + timedelta(hours=6)
            return 200, json.dumps(
                {
                    "Code": "Success",
                    "LastUpdated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": self.access_key_id,
                    "SecretAccessKey": self.secret_access_key,
                    "Token": self.session_token,
                    "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        if path.rstrip("/") == _ZONE:
            return 200, f"{self.region}a"
        return 404, ""


@contextmanager
def serve_instance_role(role: InstanceRole) -> Iterator[str]:
    """Serve ``role`` on 127.0.0.1; yields the endpoint URL for
    ``AWS_EC2_METADATA_SERVICE_ENDPOINT``."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            status, body = role.answer(
                self.command, self.path, self.headers.get("X-aws-ec2-metadata-token")
            )
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = _reply  # the names http.server looks up

        def log_message(self, *_: object) -> None:  # keep test output quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
