"""The SSM operations the emulator answers itself; every other SSM operation goes to moto.

Answered here: ``SendCommand``, ``ListCommands`` (filtered by ``InvokedAfter``,
``InvokedBefore`` and ``DocumentName``), ``ListCommandInvocations``, ``GetCommandInvocation``,
``CancelCommand`` and ``DescribeInstanceInformation``. Each sees only the commands and
instances of the calling account and the endpoint's region, as in AWS.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from tests.ssm_emulator.commands import (
    DEFAULT_DELIVERY_TIMEOUT,
    DEFAULT_EXECUTION_TIMEOUT,
    DOCUMENTS,
    EmulatedCommand,
    Invocation,
)
from tests.ssm_emulator.wire import WireRequest, error_response, json_response

if TYPE_CHECKING:
    from tests.ssm_emulator.world import SsmWorld

MAX_INSTANCE_IDS = 50
MAX_PAGE = 50
MAX_EXECUTION_TIMEOUT = 172_800


class ApiError(Exception):
    """An SSM error answer: its code and message as AWS would send them."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SsmApi:
    """Answers SSM requests from the world's state."""

    def __init__(self, world: SsmWorld) -> None:
        self._world = world
        self._operations: dict[str, Callable[[WireRequest, str], dict[str, Any]]] = {
            "SendCommand": self._send_command,
            "ListCommands": self._list_commands,
            "ListCommandInvocations": self._list_command_invocations,
            "GetCommandInvocation": self._get_command_invocation,
            "CancelCommand": self._cancel_command,
            "DescribeInstanceInformation": self._describe_instance_information,
        }

    def emulates(self, operation: str) -> bool:
        return operation in self._operations

    def answer(
        self, wire: WireRequest, account_id: str, request: AWSPreparedRequest
    ) -> AWSResponse:
        try:
            payload = self._operations[wire.operation](wire, account_id)
        except ApiError as exc:
            return error_response(request, "ssm", exc.code, exc.message)
        return json_response(request, payload)

    # --- SendCommand -------------------------------------------------------------------------

    def _send_command(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        if body.get("Targets"):
            raise ApiError(
                "ValidationException",
                "the SSM emulator sends to InstanceIds only; Targets is not emulated",
            )
        instance_ids = list(dict.fromkeys(body.get("InstanceIds") or []))
        if not instance_ids:
            raise ApiError("ValidationException", "InstanceIds or Targets must be specified")
        if len(body.get("InstanceIds") or []) > MAX_INSTANCE_IDS:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{body['InstanceIds']}' at 'instanceIds' "
                f"failed to satisfy constraint: Member must have length less than or equal to "
                f"{MAX_INSTANCE_IDS}",
            )
        comment = body.get("Comment", "")
        if len(comment) > 100:
            raise ApiError(
                "ValidationException",
                "1 validation error detected: Value at 'comment' failed to satisfy constraint: "
                "Member must have length less than or equal to 100",
            )
        document = DOCUMENTS.get(body.get("DocumentName", ""))
        if document is None:
            raise ApiError("InvalidDocument", f"Document {body.get('DocumentName')} does not exist")
        parameters: dict[str, list[str]] = body.get("Parameters") or {}
        if not parameters.get("commands"):
            raise ApiError("InvalidParameters", 'Parameter "commands" is required.')
        execution_timeout = _execution_timeout(parameters)
        delivery_timeout = int(body.get("TimeoutSeconds", DEFAULT_DELIVERY_TIMEOUT))

        not_valid = [
            i for i in instance_ids if not self._world.is_managed(account_id, wire.region, i)
        ]
        if not_valid:
            listed = ", ".join(not_valid)
            raise ApiError(
                "InvalidInstanceId",
                f"Instances [[{listed}]] not in a valid state for account {account_id}",
            )
        command = EmulatedCommand(
            command_id=str(uuid.uuid4()),
            account_id=account_id,
            region=wire.region,
            document=document,
            script="\n".join(parameters["commands"]),
            parameters=parameters,
            execution_timeout=execution_timeout,
            delivery_timeout=delivery_timeout,
            comment=comment,
            max_concurrency=body.get("MaxConcurrency", "50"),
            max_errors=body.get("MaxErrors", "0"),
            output_s3_bucket=body.get("OutputS3BucketName", ""),
            output_s3_prefix=body.get("OutputS3KeyPrefix", ""),
            requested_at=time.time(),
            access_key_id=wire.access_key_id,
        )
        self._world.accept_command(command, instance_ids)
        return {"Command": command.summary(time.time())}

    # --- reading commands ----------------------------------------------------------------------

    def _list_commands(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        wanted = _command_filter(body.get("Filters") or [])
        command_id = body.get("CommandId")
        instance_id = body.get("InstanceId")
        commands = self._world.visible_commands(account_id, wire.region, command_id)
        if command_id and not commands:
            raise ApiError("InvalidCommandId", "")
        if instance_id:
            commands = [c for c in commands if instance_id in c.invocations]
        commands = [c for c in commands if wanted(c)]
        page, token = _page(list(reversed(commands)), body)
        now = time.time()
        with self._world.lock:
            items = [c.summary(now) for c in page]
        return _with_token({"Commands": items}, token)

    def _list_command_invocations(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        _refuse_filters(body)
        command_id = body.get("CommandId")
        instance_id = body.get("InstanceId")
        details = bool(body.get("Details", False))
        # A command SSM does not know (yet) lists no invocations rather than failing.
        commands = self._world.visible_commands(account_id, wire.region, command_id)
        if not command_id:
            commands = list(reversed(commands))
        invocations: list[Invocation] = [
            inv
            for command in commands
            for inv in command.invocations.values()
            if instance_id is None or inv.instance_id == instance_id
        ]
        page, token = _page(invocations, body)
        now = time.time()
        with self._world.lock:
            items = [inv.list_entry(now, details) for inv in page]
        return _with_token({"CommandInvocations": items}, token)

    def _get_command_invocation(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        commands = self._world.visible_commands(account_id, wire.region, body.get("CommandId"))
        invocation = commands[0].invocations.get(body.get("InstanceId", "")) if commands else None
        if invocation is None:
            raise ApiError("InvocationDoesNotExist", "")
        plugin = body.get("PluginName")
        if plugin is not None and plugin != invocation.command.document.plugin_name:
            raise ApiError("InvalidPluginName", "")
        with self._world.lock:
            return invocation.get_entry(time.time())

    def _cancel_command(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        commands = self._world.visible_commands(account_id, wire.region, body.get("CommandId"))
        if not commands:
            raise ApiError("InvalidCommandId", "")
        self._world.cancel(commands[0], body.get("InstanceIds") or None)
        return {}

    # --- DescribeInstanceInformation -----------------------------------------------------------

    def _describe_instance_information(self, wire: WireRequest, account_id: str) -> dict[str, Any]:
        body = wire.json_body()
        tests = [_string_filter(f["Key"], f.get("Values", [])) for f in body.get("Filters") or []]
        tests += [
            _string_filter(f["key"], f.get("valueSet", []))
            for f in body.get("InstanceInformationFilterList") or []
        ]
        with self._world.lock:
            matching = [
                inst.information()
                for inst in self._world.instances_in(account_id, wire.region)
                if inst.managed
            ]
        matching = [info for info in matching if all(test(info) for test in tests)]
        page, token = _page(matching, body)
        return _with_token({"InstanceInformationList": page}, token)


def _string_filter(key: str, values: Sequence[str]) -> Callable[[dict[str, Any]], bool]:
    if not values or len(values) > 100:
        raise ApiError(
            "InvalidInstanceInformationFilterValue", f"filter {key} needs 1 to 100 values"
        )
    wanted = set(values)
    fields = {
        "InstanceIds": "InstanceId",
        "PingStatus": "PingStatus",
        "PlatformTypes": "PlatformType",
        "ResourceType": "ResourceType",
    }
    if key in fields:
        field = fields[key]
        return lambda info: info[field] in wanted
    raise ApiError(
        "InvalidFilterKey",
        f"the SSM emulator filters instance information by {sorted(fields)}, not {key}",
    )


def _execution_timeout(parameters: dict[str, list[str]]) -> int:
    raw = (parameters.get("executionTimeout") or [str(DEFAULT_EXECUTION_TIMEOUT)])[0]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_EXECUTION_TIMEOUT:
        raise ApiError(
            "InvalidParameters",
            f"Parameter executionTimeout value {raw} must be an integer in "
            f"[1, {MAX_EXECUTION_TIMEOUT}].",
        )
    return value


def _command_filter(filters: list[dict[str, str]]) -> Callable[[EmulatedCommand], bool]:
    """``ListCommands``' ``Filters``: ``InvokedAfter`` / ``InvokedBefore`` (a timestamp such
    as ``2021-07-07T00:00:00Z``, inclusive) and ``DocumentName``; at most 5, as in SSM."""
    if len(filters) > 5:
        raise ApiError("ValidationException", "Member must have length less than or equal to 5")
    tests: list[Callable[[EmulatedCommand], bool]] = []
    for item in filters:
        key, value = item.get("key"), item.get("value", "")
        if key in ("InvokedAfter", "InvokedBefore"):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise ApiError("InvalidFilterValue", f"{key}: {value!r}") from exc
            if key == "InvokedAfter":
                tests.append(lambda c, t=moment: c.requested_at >= t)
            else:
                tests.append(lambda c, t=moment: c.requested_at <= t)
        elif key == "DocumentName":
            tests.append(lambda c, name=value: c.document.name == name)
        else:
            raise ApiError(
                "ValidationException",
                f"the SSM emulator filters ListCommands by InvokedAfter, InvokedBefore and "
                f"DocumentName, not {key}",
            )
    return lambda command: all(test(command) for test in tests)


def _refuse_filters(body: dict[str, Any]) -> None:
    if body.get("Filters"):
        raise ApiError(
            "ValidationException",
            "the SSM emulator does not emulate Filters on ListCommands/ListCommandInvocations",
        )


def _page(items: list[Any], body: dict[str, Any]) -> tuple[list[Any], str | None]:
    size = int(body.get("MaxResults", MAX_PAGE))
    if size > MAX_PAGE:
        raise ApiError(
            "ValidationException",
            f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_PAGE}",
        )
    start = 0
    if body.get("NextToken"):
        try:
            start = json.loads(base64.b64decode(body["NextToken"]))["offset"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError("InvalidNextToken", "The specified token is not valid.") from exc
    end = start + size
    token = base64.b64encode(json.dumps({"offset": end}).encode()).decode()
    return items[start:end], (token if end < len(items) else None)


def _with_token(payload: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token is not None:
        payload["NextToken"] = token
    return payload
