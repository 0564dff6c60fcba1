"""What an emulated instance may ask AWS as its instance profile: its scripts' secrets.

A script on a real instance reads a secret with the AWS CLI (``aws ssm get-parameter
--with-decryption``), signed with the instance profile's credentials, in the instance's own
account. Here the fake ``aws`` of ``instance_tools/`` (first after the sandbox's ``bin`` on a
script's PATH) posts the read to this small HTTP server on ``127.0.0.1``, which answers from
moto's Parameter Store and Secrets Manager of that instance's account and region (or the
``--region`` asked), and records who read what: :class:`SecretRead`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from moto.secretsmanager.models import secretsmanager_backends
from moto.ssm.models import ssm_backends

# The directory of the instance-side tools (the fake ``aws``).
INSTANCE_TOOLS = Path(__file__).parent / "instance_tools"


class SecretRead(NamedTuple):
    """One read of a secret by a script on an instance, and how it was answered."""

    instance_id: str
    account_id: str
    region: str
    operation: str  # GetParameter, GetSecretValue
    name: str
    decrypted: bool
    answer: str  # "value", or the error code


class InstanceProfileRefusal(Exception):
    """The read the instance profile may not make, or of a secret that is not there."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


# (instance id) -> (account id, home region), or None for an unknown instance.
InstanceLookup = Callable[[str], tuple[str, str] | None]


class InstanceApi:
    """The server the fake ``aws`` of every emulated instance talks to."""

    def __init__(self, lookup: InstanceLookup) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()
        self._reads: list[SecretRead] = []
        self._denied: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the instance API is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="instance-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def deny_secret_reads(self, instance_id: str) -> None:
        """This instance's profile may read no secret: every read is AccessDeniedException."""
        with self._lock:
            self._denied.add(instance_id)

    @property
    def reads(self) -> list[SecretRead]:
        with self._lock:
            return list(self._reads)

    def read(self, request: dict[str, Any]) -> str:
        """The value of the secret ``request`` asks for, or ``InstanceProfileRefusal``."""
        instance_id = str(request.get("instance_id", ""))
        home = self._lookup(instance_id)
        operation, name = str(request.get("operation")), str(request.get("name", ""))
        decrypt = bool(request.get("decrypt"))
        account_id, region = home or ("", "")
        region = str(request.get("region") or region)
        try:
            if home is None:
                raise InstanceProfileRefusal("UnrecognizedClientException", "no such instance")
            with self._lock:
                denied = instance_id in self._denied
            if denied:
                raise InstanceProfileRefusal(
                    "AccessDeniedException",
                    f"User: arn:aws:sts::{account_id}:assumed-role/instance-profile/"
                    f"{instance_id} is not authorized to perform: {operation} on {name}",
                )
            value = _value(operation, account_id, region, name, decrypt)
        except InstanceProfileRefusal as refusal:
            self._record(instance_id, account_id, region, operation, name, decrypt, refusal.code)
            raise
        self._record(instance_id, account_id, region, operation, name, decrypt, "value")
        return value

    def _record(self, *fields: Any) -> None:
        with self._lock:
            self._reads.append(SecretRead(*fields))


def _value(operation: str, account_id: str, region: str, name: str, decrypt: bool) -> str:
    if operation == "GetParameter":
        parameter = ssm_backends[account_id][region].get_parameter(name)
        if parameter is None:
            raise InstanceProfileRefusal("ParameterNotFound", "")
        return parameter.decrypt(parameter.value) if decrypt else parameter.value
    if operation == "GetSecretValue":
        try:
            secret = secretsmanager_backends[account_id][region].get_secret_value(
                name, None, "AWSCURRENT"
            )
        except Exception as exc:  # moto's own not-found exception
            raise InstanceProfileRefusal(
                "ResourceNotFoundException", "Secrets Manager can't find the specified secret."
            ) from exc
        return str(secret["SecretString"])
    raise InstanceProfileRefusal("InvalidAction", f"{operation} is not emulated")


def _handler_for(api: InstanceApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                value = api.read(json.loads(self.rfile.read(length) or b"{}"))
            except InstanceProfileRefusal as refusal:
                self._reply(refusal.status, {"code": refusal.code, "message": refusal.message})
                return
            self._reply(200, {"value": value})

        def _reply(self, status: int, payload: dict[str, str]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # the reads are recorded; an access log is noise

    return Handler
