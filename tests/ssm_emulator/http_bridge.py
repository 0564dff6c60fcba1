"""The SSM emulator served over HTTP, for flows that run in another process.

The emulator answers from inside botocore in the test process, so a flow started as a
subprocess (a worker's flow run, one killed and resumed by a test) cannot reach it directly.
``serve_world`` puts a small threaded HTTP server on ``127.0.0.1`` in front of a world: the
subprocess's clients use it as their ``endpoint_url`` (the ``aws-provider`` block's
``Endpoint URL``), and each request is handed to the world exactly as botocore would have
handed it over in-process, so faults, recording and moto's fall-through all behave the same::

    with serve_world(world) as url:          # "http://127.0.0.1:<port>"
        AwsProviderBlock(endpoint_url=url, ...).save("bridge")
        ... start the flow in a subprocess ...

Service and region come from the request's SigV4 credential scope and the operation from
``X-Amz-Target`` (JSON services such as SSM) or the ``Action`` form field (STS, EC2); the URL
is rewritten to the service's real regional host, which is what the world records and what
moto matches on. Only those protocols are bridged: a REST service (S3) is answered with 501.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from botocore.awsrequest import AWSPreparedRequest
from botocore.compat import HTTPHeaders
from botocore.exceptions import ConnectionClosedError

from tests.ssm_emulator.world import SsmWorld

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
# Headers the server sets itself from the body it sends.
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection"}


class BridgeRequestError(ValueError):
    """A request the bridge cannot hand to the world (not signed, or a REST protocol)."""


def operation_of(headers: HTTPHeaders, body: bytes) -> tuple[str, str, str]:
    """``(service, region, operation)`` of a signed request to a JSON or query service."""
    scope = _SCOPE.search(headers.get("Authorization", ""))
    if scope is None:
        raise BridgeRequestError("the request carries no SigV4 credential scope")
    target = headers.get("X-Amz-Target", "")
    if target:
        operation = target.rpartition(".")[2]
    else:
        form = parse_qs(body.decode("utf-8", errors="replace"))
        actions = form.get("Action")
        if not actions:
            raise BridgeRequestError(
                f"{scope['service']}: neither X-Amz-Target nor Action: REST services are not "
                "bridged"
            )
        operation = actions[0]
    return scope["service"], scope["region"], operation


def _handler_for(world: SsmWorld) -> type[BaseHTTPRequestHandler]:
    class WorldHandler(BaseHTTPRequestHandler):
        # Keep-alive, as botocore's connection pool expects.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = HTTPHeaders()
            for key, value in self.headers.items():
                headers[key] = value
            try:
                service, region, operation = operation_of(headers, body)
            except BridgeRequestError as exc:
                self._reply(501, {"content-type": "text/plain"}, str(exc).encode())
                return
            request = AWSPreparedRequest(
                method=self.command,
                url=f"https://{service}.{region}.amazonaws.com{self.path}",
                headers=headers,
                body=body,
                stream_output=False,
            )
            try:
                response = world.answer(request, f"before-send.{service}.{operation}")
            except ConnectionClosedError:
                # The world carried the request out and lost its answer: drop the connection.
                self.close_connection = True
                return
            if response is None:
                message = f"nothing answers {service} {operation}".encode()
                self._reply(501, {"content-type": "text/plain"}, message)
                return
            self._reply(response.status_code, dict(response.headers.items()), response.content)

        do_GET = do_POST  # query services may also come as GET

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in _HOP_HEADERS:
                    self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The world records every request; the server's own access log is noise.
            return

    return WorldHandler


class _BridgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client process killed mid-request (what the crash tests do) drops its connection:
        # expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def serve_world(world: SsmWorld) -> Iterator[str]:
    """Serve ``world`` on a free loopback port while the block runs; yields its URL."""
    server = _BridgeServer(("127.0.0.1", 0), _handler_for(world))
    thread = threading.Thread(target=server.serve_forever, name="ssm-http-bridge", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
