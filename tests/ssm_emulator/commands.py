"""Emulated Run Command commands and their per-instance invocations, rendered as the SSM API.

An invocation's life is a few timestamps: when the agent started it (``InProgress`` from
then), and when its final outcome becomes visible (which may be later than the script's real
end, to hold ``InProgress`` for ``in_progress_min`` seconds). Reads compute the status from
those at the time of the read, so a poll never sees a state the agent has not reached yet.

Output is cut like SSM cuts it: the plugin ``Output`` of ``ListCommandInvocations`` is stdout,
then (when there is stderr) ``\\n----------ERROR-------\\n`` and stderr, the whole cut to
2,500 characters; ``GetCommandInvocation`` gives stdout up to 24,000 and stderr up to 8,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.ssm_emulator.agent import ProcessHandle
from tests.ssm_emulator.fleet import EmulatedInstance

PLUGIN_OUTPUT_LIMIT = 2_500
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
ERROR_SEPARATOR = "\n----------ERROR-------\n"
DEFAULT_EXECUTION_TIMEOUT = 3_600
DEFAULT_DELIVERY_TIMEOUT = 3_600

TERMINAL_STATUSES = frozenset({"Success", "Cancelled", "TimedOut", "Failed"})


@dataclass(frozen=True)
class Document:
    """An SSM command document the emulator runs."""

    name: str
    plugin_name: str
    plugin_dir: str
    platform: str

    @property
    def powershell(self) -> bool:
        return self.platform == "windows"


DOCUMENTS = {
    "AWS-RunShellScript": Document(
        "AWS-RunShellScript", "aws:runShellScript", "awsrunShellScript", "linux"
    ),
    "AWS-RunPowerShellScript": Document(
        "AWS-RunPowerShellScript", "aws:runPowerShellScript", "awsrunPowerShellScript", "windows"
    ),
}


@dataclass(frozen=True)
class Outcome:
    """How an invocation ended."""

    status: str
    details: str
    response_code: int = -1
    stdout: str = ""
    stderr: str = ""


@dataclass(frozen=True)
class InvocationView:
    """An invocation as the API shows it at one moment."""

    status: str
    details: str
    response_code: int
    stdout: str
    stderr: str
    started_at: float | None
    ended_at: float | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass
class Invocation:
    """One command on one instance. Mutated only under the world's lock."""

    command: EmulatedCommand
    instance: EmulatedInstance
    started_at: float | None = None
    ended_at: float | None = None
    visible_at: float | None = None
    outcome: Outcome | None = None
    handle: ProcessHandle = field(default_factory=ProcessHandle)

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def start(self, at: float) -> None:
        if self.started_at is None and self.outcome is None:
            self.started_at = at

    def finish(self, outcome: Outcome, ended_at: float, visible_at: float | None = None) -> bool:
        """Record the final outcome; the first one wins (a cancel racing a script's end)."""
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.ended_at = ended_at
        self.visible_at = ended_at if visible_at is None else max(ended_at, visible_at)
        return True

    def view(self, now: float) -> InvocationView:
        if self.outcome is not None and self.visible_at is not None and now >= self.visible_at:
            o = self.outcome
            return InvocationView(
                o.status,
                o.details,
                o.response_code,
                o.stdout,
                o.stderr,
                self.started_at,
                self.ended_at,
            )
        if self.started_at is not None and now >= self.started_at:
            return InvocationView("InProgress", "InProgress", -1, "", "", self.started_at, None)
        return InvocationView("Pending", "Pending", -1, "", "", None, None)

    def s3_key(self, stream: str) -> str:
        """Where real SSM puts the full ``stdout``/``stderr`` of this invocation."""
        doc = self.command.document
        parts = [
            self.command.output_s3_prefix.strip("/"),
            self.command.command_id,
            self.instance_id,
            doc.plugin_dir,
            f"0.{doc.plugin_dir}",
            stream,
        ]
        return "/".join(p for p in parts if p)

    def s3_url(self, stream: str) -> str:
        if not self.command.output_s3_bucket:
            return ""
        return (
            f"https://s3.{self.command.region}.amazonaws.com/"
            f"{self.command.output_s3_bucket}/{self.s3_key(stream)}"
        )

    def list_entry(self, now: float, details: bool) -> dict[str, Any]:
        """This invocation as an item of ``ListCommandInvocations``."""
        v = self.view(now)
        command = self.command
        entry: dict[str, Any] = {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "InstanceName": self.instance.computer_name,
            "Comment": command.comment,
            "DocumentName": command.document.name,
            "DocumentVersion": "$DEFAULT",
            "RequestedDateTime": command.requested_at,
            "Status": v.status,
            "StatusDetails": v.details,
            "TraceOutput": "",
            "StandardOutputUrl": self.s3_url("stdout"),
            "StandardErrorUrl": self.s3_url("stderr"),
            "CommandPlugins": [],
            "ServiceRole": "",
            "NotificationConfig": {
                "NotificationArn": "",
                "NotificationEvents": [],
                "NotificationType": "",
            },
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
        }
        if details:
            plugin: dict[str, Any] = {
                "Name": command.document.plugin_name,
                "Status": v.status,
                "StatusDetails": v.details,
                "ResponseCode": v.response_code,
                "Output": plugin_output(v.stdout, v.stderr),
                "StandardOutputUrl": self.s3_url("stdout"),
                "StandardErrorUrl": self.s3_url("stderr"),
                "OutputS3Region": command.region,
                "OutputS3BucketName": command.output_s3_bucket,
                "OutputS3KeyPrefix": command.output_s3_prefix,
            }
            if v.started_at is not None:
                plugin["ResponseStartDateTime"] = v.started_at
            if v.terminal and v.ended_at is not None:
                plugin["ResponseFinishDateTime"] = v.ended_at
            entry["CommandPlugins"] = [plugin]
        return entry

    def get_entry(self, now: float) -> dict[str, Any]:
        """This invocation as ``GetCommandInvocation`` answers."""
        v = self.view(now)
        command = self.command
        elapsed = ""
        if v.started_at is not None and v.ended_at is not None and v.terminal:
            elapsed = f"PT{v.ended_at - v.started_at:.3f}S"
        return {
            "CommandId": command.command_id,
            "InstanceId": self.instance_id,
            "Comment": command.comment,
            "DocumentName": command.document.name,
            "DocumentVersion": "$DEFAULT",
            "PluginName": command.document.plugin_name,
            "ResponseCode": v.response_code,
            "ExecutionStartDateTime": _iso(v.started_at),
            "ExecutionElapsedTime": elapsed,
            "ExecutionEndDateTime": _iso(v.ended_at) if v.terminal else "",
            "Status": v.status,
            "StatusDetails": v.details,
            "StandardOutputContent": v.stdout[:STDOUT_LIMIT],
            "StandardOutputUrl": self.s3_url("stdout"),
            "StandardErrorContent": v.stderr[:STDERR_LIMIT],
            "StandardErrorUrl": self.s3_url("stderr"),
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
        }


@dataclass
class EmulatedCommand:
    """One accepted ``SendCommand``: what was asked, and its invocations in request order."""

    command_id: str
    account_id: str
    region: str
    document: Document
    script: str
    parameters: dict[str, list[str]]
    execution_timeout: int
    delivery_timeout: int
    comment: str
    max_concurrency: str
    max_errors: str
    output_s3_bucket: str
    output_s3_prefix: str
    requested_at: float
    access_key_id: str | None
    invocations: dict[str, Invocation] = field(default_factory=dict)

    @property
    def instance_ids(self) -> list[str]:
        return list(self.invocations)

    @property
    def expires_at(self) -> float:
        """Past this, SSM gives up on invocations that never reached the agent."""
        return self.requested_at + self.delivery_timeout + self.execution_timeout

    def summary(self, now: float) -> dict[str, Any]:
        """This command as ``SendCommand`` and ``ListCommands`` return it."""
        views = [inv.view(now) for inv in self.invocations.values()]
        status = _command_status(views)
        return {
            "CommandId": self.command_id,
            "DocumentName": self.document.name,
            "DocumentVersion": "$DEFAULT",
            "Comment": self.comment,
            "ExpiresAfter": self.expires_at,
            "Parameters": self.parameters,
            "InstanceIds": self.instance_ids,
            "Targets": [],
            "RequestedDateTime": self.requested_at,
            "Status": status,
            "StatusDetails": status,
            "OutputS3Region": self.region,
            "OutputS3BucketName": self.output_s3_bucket,
            "OutputS3KeyPrefix": self.output_s3_prefix,
            "MaxConcurrency": self.max_concurrency,
            "MaxErrors": self.max_errors,
            "TargetCount": len(views),
            "CompletedCount": sum(1 for v in views if v.terminal),
            "ErrorCount": sum(
                1 for v in views if v.details in ("Failed", "ExecutionTimedOut", "Undeliverable")
            ),
            "DeliveryTimedOutCount": sum(1 for v in views if v.details == "DeliveryTimedOut"),
            "ServiceRole": "",
            "NotificationConfig": {
                "NotificationArn": "",
                "NotificationEvents": [],
                "NotificationType": "",
            },
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
            "TimeoutSeconds": self.delivery_timeout,
        }


def plugin_output(stdout: str, stderr: str) -> str:
    """The plugin ``Output`` field of ``ListCommandInvocations``."""
    combined = stdout + (ERROR_SEPARATOR + stderr if stderr else "")
    return combined[:PLUGIN_OUTPUT_LIMIT]


def _command_status(views: list[InvocationView]) -> str:
    if not all(v.terminal for v in views):
        return "InProgress" if any(v.status != "Pending" for v in views) else "Pending"
    if all(v.status == "Success" for v in views):
        return "Success"
    if any(v.status == "Cancelled" for v in views):
        return "Cancelled"
    if any(v.status == "Failed" or v.details == "ExecutionTimedOut" for v in views):
        return "Failed"
    return "TimedOut"


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
