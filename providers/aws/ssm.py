"""Send a script to a chunk of instances with SSM Run Command, and follow it to the end.

The polling budget is the point of this module: one ``ListCommandInvocations`` page sequence
per command per poll round (never a call per instance), and at most one output fetch per
instance, made only once its invocation is final and only when the 2,500 characters that
``ListCommandInvocations`` carries were not already the whole output.

Functions here take boto3 clients and let ``botocore.exceptions.ClientError`` through;
``providers.aws.provider`` turns those into ``AwsError`` with the account and region.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from providers.aws.errors import error_code, is_transient_fault
from providers.base import (
    Chunk,
    CommandProgress,
    CommandRef,
    Interpreter,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import (
        CommandInvocationTypeDef,
        CommandPluginTypeDef,
        SendCommandRequestTypeDef,
    )

SHELL_DOCUMENT = "AWS-RunShellScript"
POWERSHELL_DOCUMENT = "AWS-RunPowerShellScript"

MAX_INSTANCES_PER_COMMAND = 50  # SendCommand's own limit on InstanceIds
COMMENT_LIMIT = 100  # SendCommand's own limit on Comment
PAGE_SIZE = 50  # ListCommandInvocations' largest MaxResults
LIST_OUTPUT_CAP = 2_500  # plugin Output in ListCommandInvocations
STDOUT_CAP = 24_000  # GetCommandInvocation StandardOutputContent
STDERR_CAP = 8_000  # GetCommandInvocation StandardErrorContent
ERROR_MARKER = "----------ERROR-------"

# SSM may not list an unknown command for a short while after SendCommand; past this age an
# InvalidCommandId is believed.
_COMMAND_VISIBILITY_GRACE = timedelta(minutes=5)

# The worker's clock and AWS's may disagree: a lookup of commands sent since a moment on the
# worker's clock looks this much further back (the chunk marker keeps it to the right one).
_CLOCK_SKEW = timedelta(minutes=5)

_STILL_RUNNING = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
_MARKER_LINE = re.compile(r"\n?^" + re.escape(ERROR_MARKER) + r"$\n?", re.MULTILINE)


def document_for(interpreter: Interpreter) -> str:
    """The SSM document that runs scripts of ``interpreter``."""
    return POWERSHELL_DOCUMENT if interpreter is Interpreter.POWERSHELL else SHELL_DOCUMENT


def commands_for(request: ScriptRequest) -> list[str]:
    """The ``commands`` parameter: the script itself, made to run under its interpreter.

    AWS-RunShellScript writes the commands to a file and runs it with ``sh``, which honours a
    shebang; so bash and sh scripts get one when they have none, and Python is fed to
    ``python3`` through a quoted here-document (nothing in it is expanded by the shell).
    """
    script = request.script
    if request.interpreter is Interpreter.POWERSHELL:
        return [script]
    if request.interpreter is Interpreter.PYTHON:
        delimiter = "CLOUDOPS_PYTHON_EOF"
        while delimiter in script:
            delimiter += "_"
        body = script if script.endswith("\n") else script + "\n"
        return [f"python3 - <<'{delimiter}'\n{body}{delimiter}"]
    if script.startswith("#!"):
        return [script]
    shebang = "#!/bin/bash" if request.interpreter is Interpreter.BASH else "#!/bin/sh"
    return [f"{shebang}\n{script}"]


def chunk_targets(
    account_id: str, region: str, targets: Sequence[Target], request: ScriptRequest
) -> list[Chunk]:
    """Targets of one (account, region) in commands of at most 50, in a stable order."""
    ordered = sorted(targets, key=lambda t: t.instance_id)
    chunks = []
    for start in range(0, len(ordered), MAX_INSTANCES_PER_COMMAND):
        part = ordered[start : start + MAX_INSTANCES_PER_COMMAND]
        ids = [t.instance_id for t in part]
        key = Chunk.make_key(account_id, region, ids, request.fingerprint())
        chunks.append(Chunk(key=key, account_id=account_id, region=region, targets=part))
    return chunks


def send_command_chunk(
    ssm: SSMClient,
    chunk: Chunk,
    request: ScriptRequest,
    *,
    output_s3_bucket: str | None,
    output_s3_prefix: str | None,
    grace_seconds: float,
) -> CommandRef:
    """Send ``request`` to the instances of ``chunk`` as one ``SendCommand``."""
    params: SendCommandRequestTypeDef = {
        "InstanceIds": chunk.instance_ids,
        "DocumentName": document_for(request.interpreter),
        "Parameters": {
            "commands": commands_for(request),
            "executionTimeout": [str(request.timeout_seconds)],
        },
        "TimeoutSeconds": request.delivery_timeout_seconds,
    }
    params["Comment"] = command_comment(request.comment, chunk.key)
    if request.max_concurrency:
        params["MaxConcurrency"] = request.max_concurrency
    if request.max_errors:
        params["MaxErrors"] = request.max_errors
    prefix = output_s3_prefix.strip("/") if output_s3_bucket and output_s3_prefix else None
    if output_s3_bucket:
        params["OutputS3BucketName"] = output_s3_bucket
        if prefix:
            params["OutputS3KeyPrefix"] = prefix
    command = ssm.send_command(**params)["Command"]
    return _command_ref(
        command["CommandId"],
        chunk,
        request,
        sent_at=datetime.now(UTC),
        output_s3_bucket=output_s3_bucket,
        output_s3_prefix=prefix,
        grace_seconds=grace_seconds,
    )


def chunk_marker(chunk_key: str) -> str:
    """What ends the ``Comment`` of the command of a chunk: ``#<chunk key>``."""
    return f"#{chunk_key}"


def command_comment(comment: str, chunk_key: str) -> str:
    """SSM's ``Comment`` for a chunk's command: the request's comment (change, workflow,
    step, flow run), cut to fit, then the chunk's marker, so that a run which never learnt
    of its command (:func:`find_sent_command`) can still find it in SSM's history."""
    marker = chunk_marker(chunk_key)
    text = comment[: COMMENT_LIMIT - len(marker) - 1].rstrip()
    return f"{text} {marker}" if text else marker


def find_sent_command(
    ssm: SSMClient,
    chunk: Chunk,
    request: ScriptRequest,
    since: datetime,
    *,
    grace_seconds: float,
) -> CommandRef | None:
    """The command sent for ``chunk`` of ``request`` since ``since``, from SSM's history
    (``ListCommands`` of the request's document in that window, paged), or None.

    A command is the chunk's when its comment ends with the chunk's marker and it went to
    exactly the chunk's instances.
    """
    after = (since - _CLOCK_SKEW).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    marker = chunk_marker(chunk.key)
    wanted = sorted(chunk.instance_ids)
    pages = ssm.get_paginator("list_commands").paginate(
        Filters=[
            {"key": "InvokedAfter", "value": after},
            {"key": "DocumentName", "value": document_for(request.interpreter)},
        ],
        PaginationConfig={"PageSize": PAGE_SIZE},
    )
    for page in pages:
        for command in page.get("Commands", []):
            if (command.get("Comment") or "").endswith(marker) and sorted(
                command.get("InstanceIds", [])
            ) == wanted:
                return _command_ref(
                    command["CommandId"],
                    chunk,
                    request,
                    sent_at=command.get("RequestedDateTime") or datetime.now(UTC),
                    output_s3_bucket=command.get("OutputS3BucketName") or None,
                    output_s3_prefix=command.get("OutputS3KeyPrefix") or None,
                    grace_seconds=grace_seconds,
                )
    return None


def _command_ref(
    command_id: str,
    chunk: Chunk,
    request: ScriptRequest,
    *,
    sent_at: datetime,
    output_s3_bucket: str | None,
    output_s3_prefix: str | None,
    grace_seconds: float,
) -> CommandRef:
    budget = request.timeout_seconds + request.delivery_timeout_seconds + grace_seconds
    return CommandRef(
        command_id=command_id,
        chunk_key=chunk.key,
        account_id=chunk.account_id,
        region=chunk.region,
        instance_ids=chunk.instance_ids,
        sent_at=sent_at,
        deadline=sent_at + timedelta(seconds=budget),
        output_s3_bucket=output_s3_bucket,
        output_s3_prefix=output_s3_prefix,
        delivery_timeout_seconds=request.delivery_timeout_seconds,
    )


@dataclass(frozen=True)
class CommandOutput:
    """What a script printed, and whether an API cap cut it."""

    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    note: str | None = None


def split_plugin_output(text: str) -> CommandOutput:
    """Split a plugin ``Output`` into stdout and the stderr that follows the marker line."""
    match = _MARKER_LINE.search(text)
    if match is None:
        return CommandOutput(stdout=text)
    return CommandOutput(stdout=text[: match.start()], stderr=text[match.end() :])


def s3_output_keys(
    prefix: str | None, command_id: str, instance_id: str, plugin: str
) -> tuple[str, str]:
    """(stdout key, stderr key) where SSM writes a plugin's full output."""
    step = plugin.replace(":", "")
    base = f"{command_id}/{instance_id}/{step}/0.{step}"
    if prefix:
        base = f"{prefix}/{base}"
    return f"{base}/stdout", f"{base}/stderr"


def outcome_of(
    invocation: CommandInvocationTypeDef, ref: CommandRef
) -> tuple[ResultStatus, str | None]:
    """The result status of a final invocation and, unless it succeeded, why.

    ``StatusDetails`` is the finer of SSM's two fields, so it decides; ``Status`` is only a
    fallback for a detail this code has not seen.
    """
    status = invocation.get("Status", "")
    detail = invocation.get("StatusDetails") or status
    where = f"{invocation.get('InstanceId', '?')} in account {ref.account_id} {ref.region}"
    if detail == "Success":
        return ResultStatus.SUCCESS, None
    if detail == "Failed":
        return ResultStatus.FAILED, "the script exited with a non-zero code: see its output"
    if detail == "ExecutionTimedOut":
        return ResultStatus.TIMED_OUT, "the script ran past its execution timeout and was stopped"
    if detail == "DeliveryTimedOut":
        within = f"{ref.delivery_timeout_seconds} s" if ref.delivery_timeout_seconds else "time"
        return (
            ResultStatus.UNDELIVERABLE,
            f"SSM could not deliver within {within}: the agent went offline? "
            f"({where}; check that the instance is running and its agent is Online)",
        )
    if detail == "Undeliverable":
        return (
            ResultStatus.UNDELIVERABLE,
            f"SSM could not deliver the command to {where}: the instance may be stopped or "
            "gone, or its agent has no connection",
        )
    if detail == "Terminated":
        return (
            ResultStatus.UNDELIVERABLE,
            f"SSM terminated the invocation on {where}: the instance went away or the "
            "command reached its MaxErrors limit",
        )
    if detail == "InvalidPlatform":
        return (
            ResultStatus.SKIPPED,
            f"{where} runs a platform the document does not support: not sent to it",
        )
    if detail == "AccessDenied":
        return (
            ResultStatus.ERROR,
            f"SSM was denied running the command on {where}: check the caller's and the "
            "instance profile's SSM permissions",
        )
    if detail in ("Cancelled", "Canceled"):
        return ResultStatus.CANCELLED, "the command was cancelled before it finished"
    if status == "TimedOut":
        return ResultStatus.TIMED_OUT, f"SSM reports TimedOut ({detail})"
    return (
        ResultStatus.ERROR,
        f"SSM reported an unexpected status {status!r} / {detail!r} for {where}",
    )


def is_final(invocation: CommandInvocationTypeDef) -> bool:
    """True once SSM will not change an invocation's status any more."""
    status, detail = invocation.get("Status"), invocation.get("StatusDetails")
    return status not in _STILL_RUNNING and detail not in _STILL_RUNNING


def list_invocations(ssm: SSMClient, command_id: str) -> list[CommandInvocationTypeDef]:
    """Every invocation of a command with plugin details, in pages of 50."""
    paginator = ssm.get_paginator("list_command_invocations")
    invocations: list[CommandInvocationTypeDef] = []
    pages = paginator.paginate(
        CommandId=command_id, Details=True, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        invocations.extend(page.get("CommandInvocations", []))
    return invocations


def poll_invocations(
    ssm: SSMClient,
    ref: CommandRef,
    finished: Collection[str] = (),
    *,
    s3: Callable[[], S3Client] | None = None,
) -> CommandProgress:
    """One poll round of ``ref``: results of instances that became final, and the rest.

    ``finished`` are instance ids already reported; they are skipped. ``s3`` builds an S3
    client, called only when a full output has to be read from the output bucket. An
    invocation whose result cannot be read is that instance's ``error`` result: it never
    fails the poll of its neighbours.
    """
    done = set(finished)
    try:
        invocations = list_invocations(ssm, ref.command_id)
    except ClientError as exc:
        young = datetime.now(UTC) - ref.sent_at < _COMMAND_VISIBILITY_GRACE
        if error_code(exc) == "InvalidCommandId" and young:
            invocations = []
        else:
            raise
    by_instance = {inv.get("InstanceId"): inv for inv in invocations}
    results: list[ScriptResult] = []
    pending: list[str] = []
    for instance_id in ref.instance_ids:
        if instance_id in done:
            continue
        invocation = by_instance.get(instance_id)
        # Absent right after SendCommand is SSM's eventual consistency, not a failure.
        if invocation is None or not is_final(invocation):
            pending.append(instance_id)
            continue
        try:
            output = final_output(ssm, ref, invocation, s3)
            result = None if output is None else result_of(ref, invocation, output)
        except Exception as exc:
            if is_transient_fault(exc):
                pending.append(instance_id)  # looked at again next round
                continue
            result = unreadable_result(ref, instance_id, invocation, exc)
        if result is None:
            pending.append(instance_id)
        else:
            results.append(result)
    return CommandProgress(ref=ref, results=results, pending=pending)


def unreadable_result(
    ref: CommandRef, instance_id: str, invocation: CommandInvocationTypeDef, exc: Exception
) -> ScriptResult:
    """The ``error`` result of one final invocation whose result could not be read."""
    detail = invocation.get("StatusDetails") or invocation.get("Status") or "final"
    return ScriptResult.without_running(
        Target(instance_id=instance_id, account_id=ref.account_id, region=ref.region),
        ResultStatus.ERROR,
        f"SSM reports {detail} for command {ref.command_id} on {instance_id}, but its result "
        f"could not be read ({type(exc).__name__}: {exc}); see the command in the SSM console",
        command_id=ref.command_id,
    )


def _plugin(invocation: CommandInvocationTypeDef) -> CommandPluginTypeDef:
    plugins = invocation.get("CommandPlugins") or [{}]
    return plugins[0]


def final_output(
    ssm: SSMClient,
    ref: CommandRef,
    invocation: CommandInvocationTypeDef,
    s3: Callable[[], S3Client] | None,
) -> CommandOutput | None:
    """The output of a final invocation, fetched at most once; None when a fetch must wait
    for the next round (throttled past botocore's retries, or not visible yet).

    The listing's 2,500 characters are enough when the output was shorter. Past that, the
    output bucket (when there is one) gives the whole output; whatever S3 will not give
    (refused, failing, or a stdout the agent did not upload) comes from
    ``GetCommandInvocation`` (24,000/8,000 characters). The listing's cut text is the last
    resort, for an instance whose output neither would give, and says so.
    """
    plugin = _plugin(invocation)
    listed = plugin.get("Output") or ""
    if len(listed) < LIST_OUTPUT_CAP:
        return split_plugin_output(listed)
    instance_id = invocation["InstanceId"]
    cut = split_plugin_output(listed)
    try:
        if ref.output_s3_bucket and s3 is not None:
            from_s3 = _output_from_s3(
                ssm, s3(), ref.output_s3_bucket, ref, instance_id, plugin.get("Name", ""), cut
            )
            if from_s3 is not None:
                return from_s3
        return _get_command_invocation(ssm, ref.command_id, instance_id)
    except (ClientError, BotoCoreError) as exc:
        if is_transient_fault(exc) or error_code(exc) == "InvocationDoesNotExist":
            return None
        return CommandOutput(
            stdout=cut.stdout,
            stderr=cut.stderr,
            stdout_truncated=True,
            stderr_truncated=bool(cut.stderr),
            note=(
                f"the full output could not be read ({error_code(exc) or type(exc).__name__}); "
                f"only its first {LIST_OUTPUT_CAP:,} characters are shown"
            ),
        )


def _get_command_invocation(ssm: SSMClient, command_id: str, instance_id: str) -> CommandOutput:
    reply = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    stdout = reply.get("StandardOutputContent") or ""
    stderr = reply.get("StandardErrorContent") or ""
    return CommandOutput(
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=len(stdout) >= STDOUT_CAP,
        stderr_truncated=len(stderr) >= STDERR_CAP,
    )


def _output_from_s3(
    ssm: SSMClient,
    s3: S3Client,
    bucket: str,
    ref: CommandRef,
    instance_id: str,
    plugin: str,
    listed: CommandOutput,
) -> CommandOutput | None:
    """The full output SSM wrote to the output bucket; None when S3 has no stdout to give
    (not uploaded: the instance profile may lack write access; or refused), so that the
    caller reads ``GetCommandInvocation`` instead.

    The agent uploads a stream only when the script wrote to it. So a stderr object S3 says
    does not exist is empty output; one S3 refuses (403, which is what S3 answers for an
    absent key to a caller without ``s3:ListBucket``) or fails to give is asked of
    ``GetCommandInvocation``, which knows whether there was any.
    """
    stdout_key, stderr_key = s3_output_keys(
        ref.output_s3_prefix, ref.command_id, instance_id, plugin or "aws:runShellScript"
    )
    try:
        stdout = _read_object(s3, bucket, stdout_key)
    except (ClientError, BotoCoreError):
        stdout = None
    if stdout is None:
        if listed.stdout:
            return None
        # The listing starts with SSM's stderr marker: the script printed nothing on stdout.
        stdout = ""
    try:
        stderr = _read_object(s3, bucket, stderr_key)
    except (ClientError, BotoCoreError):
        fetched = _get_command_invocation(ssm, ref.command_id, instance_id)
        return CommandOutput(
            stdout=stdout, stderr=fetched.stderr, stderr_truncated=fetched.stderr_truncated
        )
    return CommandOutput(stdout=stdout, stderr=stderr or "")


def _read_object(s3: S3Client, bucket: str, key: str) -> str | None:
    """The text of an object; None when S3 says it does not exist (404). Any other failure
    (a 403 included) is raised: only the caller knows what absence means there."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    with body:
        return body.read().decode("utf-8", errors="replace")


def result_of(
    ref: CommandRef, invocation: CommandInvocationTypeDef, output: CommandOutput
) -> ScriptResult:
    """The ScriptResult of one final invocation."""
    plugin = _plugin(invocation)
    status, error = outcome_of(invocation, ref)
    exit_code = plugin.get("ResponseCode")
    if status not in (ResultStatus.SUCCESS, ResultStatus.FAILED) or exit_code is None:
        exit_code = None
    if output.note:
        error = f"{error}; {output.note}" if error else output.note
    requested = invocation.get("RequestedDateTime")
    return ScriptResult(
        instance_id=invocation["InstanceId"],
        account_id=ref.account_id,
        region=ref.region,
        status=status,
        exit_code=exit_code,
        stdout=output.stdout,
        stderr=output.stderr,
        stdout_truncated=output.stdout_truncated,
        stderr_truncated=output.stderr_truncated,
        command_id=ref.command_id,
        started_at=plugin.get("ResponseStartDateTime") or requested,
        ended_at=plugin.get("ResponseFinishDateTime") or requested,
        error=error,
    )


def cancel_invocations(
    ssm: SSMClient, ref: CommandRef, pending: Iterable[str]
) -> list[ScriptResult]:
    """Cancel what is still running past the deadline (best effort) and say so per instance."""
    pending = list(pending)
    if not pending:
        return []
    try:
        ssm.cancel_command(CommandId=ref.command_id, InstanceIds=pending)
    except (ClientError, BotoCoreError):
        # The deadline is ours, not SSM's: the results stand whether or not SSM took the cancel.
        return expired_results(ref, pending, cancelled=False)
    return expired_results(ref, pending, cancelled=True)


def expired_results(
    ref: CommandRef, pending: Iterable[str], *, cancelled: bool
) -> list[ScriptResult]:
    """``timed_out`` results for instances with no final status by ``ref``'s deadline."""
    allowed = (ref.deadline - ref.sent_at).total_seconds()
    fate = "the command was cancelled" if cancelled else "cancelling the command failed"
    message = f"no final status by the run's deadline ({allowed:.0f}s); {fate}"
    return [
        ScriptResult.without_running(
            Target(instance_id=i, account_id=ref.account_id, region=ref.region),
            ResultStatus.TIMED_OUT,
            message,
            command_id=ref.command_id,
        )
        for i in pending
    ]
