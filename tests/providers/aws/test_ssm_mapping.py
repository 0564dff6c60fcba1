"""The parts of the SSM engine that need no AWS: status mapping, output splitting, the
commands sent for each interpreter (run here for real), chunking and target checks."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from providers.aws.precheck import (
    ManagedInstance,
    check_registration,
    target_problem,
    validate_targets,
)
from providers.aws.ssm import (
    ERROR_MARKER,
    commands_for,
    document_for,
    is_final,
    outcome_of,
    s3_output_keys,
    split_plugin_output,
)
from providers.aws.ssm import chunk_targets as make_chunks
from providers.base import (
    Chunk,
    CommandRef,
    Interpreter,
    Platform,
    ResultStatus,
    ScriptRequest,
    Target,
)

ACCOUNT = "111111111111"
REGION = "us-east-1"


def _ref() -> CommandRef:
    now = datetime.now(UTC)
    return CommandRef(
        command_id="c-1",
        chunk_key="k",
        account_id=ACCOUNT,
        region=REGION,
        instance_ids=["i-0123456789abcdef0"],
        sent_at=now,
        deadline=now + timedelta(minutes=5),
        delivery_timeout_seconds=600,
    )


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        ("Success", "Success", ResultStatus.SUCCESS),
        ("Failed", "Failed", ResultStatus.FAILED),
        ("TimedOut", "ExecutionTimedOut", ResultStatus.TIMED_OUT),
        ("Failed", "ExecutionTimedOut", ResultStatus.TIMED_OUT),
        ("TimedOut", "DeliveryTimedOut", ResultStatus.UNDELIVERABLE),
        ("Failed", "Undeliverable", ResultStatus.UNDELIVERABLE),
        ("Failed", "Terminated", ResultStatus.UNDELIVERABLE),
        ("Failed", "InvalidPlatform", ResultStatus.SKIPPED),
        ("Failed", "AccessDenied", ResultStatus.ERROR),
        ("Cancelled", "Cancelled", ResultStatus.CANCELLED),
        ("Cancelled", "Canceled", ResultStatus.CANCELLED),
        ("TimedOut", "SomethingNew", ResultStatus.TIMED_OUT),
        ("Weird", "Weirder", ResultStatus.ERROR),
    ],
)
def test_every_ssm_status_maps_to_a_result_status(status, detail, expected):
    invocation = {"InstanceId": "i-0123456789abcdef0", "Status": status, "StatusDetails": detail}
    assert is_final(invocation)
    mapped, reason = outcome_of(invocation, _ref())
    assert mapped is expected
    if expected is not ResultStatus.SUCCESS:
        assert reason
    if (status, detail) == ("Weird", "Weirder"):
        assert "Weird" in reason and "Weirder" in reason


def test_delivery_timeout_says_how_long_ssm_tried():
    invocation = {"InstanceId": "i-0123456789abcdef0", "Status": "TimedOut"}
    invocation["StatusDetails"] = "DeliveryTimedOut"
    _, reason = outcome_of(invocation, _ref())
    assert "within 600 s" in reason and "offline" in reason


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Delayed", "Cancelling"])
def test_running_invocations_are_not_final(status):
    assert not is_final({"Status": status, "StatusDetails": status})


def test_plugin_output_splits_at_the_error_line():
    text = f"line one\nline two\n\n{ERROR_MARKER}\nboom\n"
    out = split_plugin_output(text)
    assert out.stdout == "line one\nline two\n"
    assert out.stderr == "boom\n"
    assert split_plugin_output("only stdout\n").stdout == "only stdout\n"
    assert split_plugin_output("only stdout\n").stderr == ""


def test_a_marker_inside_a_line_is_not_the_separator():
    text = f"echo {ERROR_MARKER} inline\n"
    assert split_plugin_output(text).stdout == text


def test_s3_keys_follow_the_layout_ssm_writes():
    assert s3_output_keys("pre/fix", "cmd", "i-1", "aws:runShellScript") == (
        "pre/fix/cmd/i-1/awsrunShellScript/0.awsrunShellScript/stdout",
        "pre/fix/cmd/i-1/awsrunShellScript/0.awsrunShellScript/stderr",
    )
    stdout, _ = s3_output_keys(None, "cmd", "i-1", "aws:runPowerShellScript")
    assert stdout == "cmd/i-1/awsrunPowerShellScript/0.awsrunPowerShellScript/stdout"


def test_documents_by_interpreter():
    assert document_for(Interpreter.BASH) == "AWS-RunShellScript"
    assert document_for(Interpreter.SH) == "AWS-RunShellScript"
    assert document_for(Interpreter.PYTHON) == "AWS-RunShellScript"
    assert document_for(Interpreter.POWERSHELL) == "AWS-RunPowerShellScript"


def _run_like_the_agent(commands: list[str], tmp_path) -> subprocess.CompletedProcess[str]:
    # The agent writes the commands, one per line, to a file and runs it with sh.
    script = tmp_path / "_script.sh"
    script.write_text("\n".join(commands))
    script.chmod(0o755)
    return subprocess.run(["sh", "-c", str(script)], capture_output=True, text=True, check=False)


def test_bash_scripts_run_under_bash(tmp_path):
    request = ScriptRequest(script='echo "$BASH_VERSION" | cut -c1\nexit 3', interpreter="bash")
    done = _run_like_the_agent(commands_for(request), tmp_path)
    assert done.returncode == 3
    assert done.stdout.strip().isdigit()


def test_python_scripts_run_through_python3_untouched_by_the_shell(tmp_path):
    script = (
        "import sys\nprint('$HOME stays literal', 'CLOUDOPS_PYTHON_EOF')\n"
        "print('err', file=sys.stderr)\nsys.exit(4)"
    )
    request = ScriptRequest(script=script, interpreter="python")
    done = _run_like_the_agent(commands_for(request), tmp_path)
    assert done.returncode == 4
    assert done.stdout == "$HOME stays literal CLOUDOPS_PYTHON_EOF\n"
    assert done.stderr == "err\n"


def test_a_shebang_already_there_is_kept():
    request = ScriptRequest(script="#!/bin/sh\necho hi", interpreter="bash")
    assert commands_for(request) == ["#!/bin/sh\necho hi"]


def _targets(n: int, region: str = REGION) -> list[Target]:
    return [Target(instance_id=f"i-{i:017x}", account_id=ACCOUNT, region=region) for i in range(n)]


def test_chunks_hold_at_most_fifty_and_keys_are_stable():
    request = ScriptRequest(script="true")
    targets = _targets(120)
    chunks = make_chunks(ACCOUNT, REGION, targets, request)
    assert [len(c.targets) for c in chunks] == [50, 50, 20]
    again = make_chunks(ACCOUNT, REGION, list(reversed(targets)), request)
    assert [c.key for c in chunks] == [c.key for c in again]
    first = chunks[0]
    expected = Chunk.make_key(ACCOUNT, REGION, first.instance_ids, request.fingerprint())
    assert first.key == expected
    changed = make_chunks(ACCOUNT, REGION, targets, ScriptRequest(script="false"))
    assert changed[0].key != first.key


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (Target(instance_id="i-123", account_id=ACCOUNT, region=REGION), "i-123"),
        (Target(instance_id="i-0123456789ABCDEF0", account_id=ACCOUNT, region=REGION), "hex"),
        (
            Target(instance_id="i-01234567", account_id="12345678901", region=REGION),
            "leading zeros",
        ),
        (Target(instance_id="i-01234567", account_id=ACCOUNT, region="us-east-9"), "us-east-9"),
    ],
)
def test_malformed_targets_are_named(target, words):
    problem = target_problem(target)
    assert problem and words in problem


def test_validation_gives_one_result_per_target_and_skips_the_wrong_platform():
    good = Target(instance_id="i-01234567", account_id=ACCOUNT, region=REGION)
    windows = Target(
        instance_id="i-89abcdef", account_id=ACCOUNT, region=REGION, platform=Platform.WINDOWS
    )
    bad = Target(instance_id="x-1", account_id=ACCOUNT, region=REGION)
    valid, results = validate_targets([good, good, windows, bad], ScriptRequest(script="true"))
    assert valid == [good]
    by_id = {r.instance_id: r for r in results}
    assert by_id["i-89abcdef"].status is ResultStatus.SKIPPED
    assert "windows" in by_id["i-89abcdef"].error
    assert by_id["x-1"].status is ResultStatus.ERROR


def test_registration_check_trusts_ssm_over_the_target_list():
    targets = _targets(4)
    managed = {
        targets[0].instance_id: ManagedInstance(
            instance_id=targets[0].instance_id, ping_status="Online", platform_type="Linux"
        ),
        targets[1].instance_id: ManagedInstance(
            instance_id=targets[1].instance_id, ping_status="ConnectionLost"
        ),
        targets[2].instance_id: ManagedInstance(
            instance_id=targets[2].instance_id, ping_status="Online", platform_type="Windows"
        ),
    }
    ready, results = check_registration(targets, managed, ScriptRequest(script="true"))
    assert ready == [targets[0]]
    statuses = {r.instance_id: r.status for r in results}
    assert statuses == {
        targets[1].instance_id: ResultStatus.OFFLINE,
        targets[2].instance_id: ResultStatus.SKIPPED,
        targets[3].instance_id: ResultStatus.NOT_MANAGED,
    }
    unmanaged = next(r for r in results if r.status is ResultStatus.NOT_MANAGED)
    assert f"account {ACCOUNT} region {REGION}" in unmanaged.error
