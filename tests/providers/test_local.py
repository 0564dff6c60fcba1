"""The local provider, running real scripts in real subprocesses on this machine."""

from __future__ import annotations

import re
import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from providers.base import (
    CredentialSource,
    DiscoveryFilter,
    Interpreter,
    Platform,
    ResultStatus,
    ScriptRequest,
    Target,
)
from providers.local import STDERR_LIMIT, STDOUT_LIMIT, LocalProvider

LOCALHOST = LocalProvider.TARGET


@pytest.fixture
def provider() -> LocalProvider:
    return LocalProvider()


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init to reap it (it no longer runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_echo_output_and_times(provider: LocalProvider) -> None:
    before = datetime.now(UTC)
    result = provider.execute_script(LOCALHOST, "echo hello from $0; echo warn >&2", timeout=30)
    assert result.status is ResultStatus.SUCCESS
    assert result.exit_code == 0
    assert result.stdout.startswith("hello from ")
    assert result.stderr == "warn\n"
    assert result.instance_id == "localhost"
    assert (result.account_id, result.region) == ("local", "local")
    assert result.command_id and result.command_id.startswith("local-")
    assert result.started_at and result.ended_at
    assert before <= result.started_at <= result.ended_at
    assert result.error is None


def test_non_zero_exit_is_failed_with_its_code(provider: LocalProvider) -> None:
    result = provider.execute_script(LOCALHOST, "echo partial; echo broken >&2; exit 3")
    assert result.status is ResultStatus.FAILED
    assert result.exit_code == 3
    assert result.stdout == "partial\n"
    assert result.stderr == "broken\n"
    assert "code 3" in (result.error or "")


def test_a_reboot_request_is_refused_clearly_and_never_run_again(
    provider: LocalProvider, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = f'echo ran >> "{runs}"; echo installed; exit 194'

    result = provider.execute_script(LOCALHOST, script)

    assert result.status is ResultStatus.FAILED and result.exit_code == 194
    assert "asked for a reboot (exit 194" in (result.error or "")
    assert "never reboots the machine it runs on" in (result.error or "")
    assert socket.gethostname() in (result.error or "")
    assert result.stdout == "installed\n"
    assert runs.read_text() == "ran\n"  # once: no reboot, no second run
    assert not LocalProvider.reboots_through_agent


def test_script_reads_the_workers_environment(
    provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDOPS_ROOT", "/sandbox/root")
    result = provider.execute_script(LOCALHOST, 'printf "%s" "$CLOUDOPS_ROOT"')
    assert result.stdout == "/sandbox/root"


def test_sh_and_python_interpreters(provider: LocalProvider) -> None:
    sh = provider.execute_script(LOCALHOST, "echo from sh", Interpreter.SH)
    py = provider.execute_script(
        LOCALHOST, "import sys\nprint('from', 'python')\nsys.exit(4)", "python"
    )
    assert (sh.status, sh.stdout) == (ResultStatus.SUCCESS, "from sh\n")
    assert (py.status, py.exit_code, py.stdout) == (ResultStatus.FAILED, 4, "from python\n")


def test_powershell_runs_with_pwsh_or_is_skipped_when_missing(provider: LocalProvider) -> None:
    result = provider.execute_script(LOCALHOST, "Write-Output 'from pwsh'", Interpreter.POWERSHELL)
    if shutil.which("pwsh"):
        assert (result.status, result.stdout.strip()) == (ResultStatus.SUCCESS, "from pwsh")
    else:
        assert result.status is ResultStatus.SKIPPED
        assert "pwsh is not installed" in (result.error or "")


def test_timeout_kills_the_whole_process_group(provider: LocalProvider) -> None:
    # The child ignores SIGTERM, so only the SIGKILL to the group can end it.
    script = "(trap '' TERM; exec sleep 60) &\necho child=$!\nwait\n"
    started = time.monotonic()
    result = provider.execute_script(LOCALHOST, script, timeout=1)
    elapsed = time.monotonic() - started

    assert result.status is ResultStatus.TIMED_OUT
    assert result.exit_code is None
    assert "timeout (1 s)" in (result.error or "")
    assert elapsed < 15
    match = re.search(r"child=(\d+)", result.stdout)
    assert match, result.stdout
    child = int(match.group(1))
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), f"child sleep {child} survived the timeout"


def test_stdout_over_the_cap_is_truncated_and_flagged(provider: LocalProvider) -> None:
    script = (
        "head -c 30000 /dev/zero | tr '\\0' 'a'\n" "head -c 9000 /dev/zero | tr '\\0' 'b' >&2\n"
    )
    result = provider.execute_script(LOCALHOST, script)
    assert result.status is ResultStatus.SUCCESS
    assert result.stdout == "a" * STDOUT_LIMIT
    assert result.stdout_truncated
    assert result.stderr == "b" * STDERR_LIMIT
    assert result.stderr_truncated


def test_output_under_the_cap_is_not_flagged(provider: LocalProvider) -> None:
    result = provider.execute_script(LOCALHOST, "head -c 24000 /dev/zero | tr '\\0' 'a'")
    assert len(result.stdout) == STDOUT_LIMIT
    assert not result.stdout_truncated
    assert not result.stderr_truncated


def test_other_targets_are_refused_and_localhost_still_runs(provider: LocalProvider) -> None:
    remote = Target(
        instance_id="i-0123456789abcdef0", account_id="123456789012", region="us-east-1"
    )
    batch = provider.execute_script_batch([remote, LOCALHOST], "echo ran")
    by_id = {r.instance_id: r for r in batch.results}
    assert by_id["localhost"].status is ResultStatus.SUCCESS
    refused = by_id["i-0123456789abcdef0"]
    assert refused.status is ResultStatus.ERROR
    assert "only on 'localhost'" in (refused.error or "")
    assert "i-0123456789abcdef0" in (refused.error or "")
    assert batch.status == "partial"


def test_localhost_without_account_or_region_is_accepted(provider: LocalProvider) -> None:
    result = provider.execute_script(Target(instance_id="localhost"), "echo bare")
    assert result.status is ResultStatus.SUCCESS
    assert (result.account_id, result.region) == ("", "")


def test_linux_script_to_a_windows_target_is_skipped(provider: LocalProvider) -> None:
    windows = Target(instance_id="localhost", platform=Platform.WINDOWS)
    result = provider.execute_script(windows, "echo never")
    assert result.status is ResultStatus.SKIPPED
    assert "windows" in (result.error or "")
    assert result.exit_code is None


def test_split_steps_and_poll_from_a_new_provider_instance(provider: LocalProvider) -> None:
    request = ScriptRequest(script="sleep 0.3; echo done", timeout_seconds=30)
    plan = provider.prepare([LOCALHOST, LOCALHOST], request)
    assert plan.results == []
    assert [c.instance_ids for c in plan.chunks] == [["localhost"]]
    assert plan.chunks[0].key == provider.prepare([LOCALHOST], request).chunks[0].key

    ref = provider.send(plan.chunks[0], request)
    first = provider.poll(ref)
    assert first.pending == ["localhost"] and first.results == []

    # A flow may build a fresh provider in each task: it still finds the running script.
    other = LocalProvider()
    deadline = time.monotonic() + 10
    progress = other.poll(ref)
    while progress.pending and time.monotonic() < deadline:
        time.sleep(0.05)
        progress = other.poll(ref)
    assert [r.stdout for r in progress.results] == ["done\n"]
    # Polling again with the instance already reported returns nothing new.
    again = other.poll(ref, finished={"localhost"})
    assert again.results == [] and again.pending == []


def test_a_started_script_is_found_by_its_chunk_from_its_own_process(
    provider: LocalProvider,
) -> None:
    request = ScriptRequest(script="echo once", timeout_seconds=30)
    [chunk] = provider.prepare([LOCALHOST], request).chunks
    before = datetime.now(UTC)
    assert provider.find_sent(chunk, request, before) is None

    ref = provider.send(chunk, request)

    assert LocalProvider().find_sent(chunk, request, before) == ref
    assert provider.find_sent(chunk, request, datetime.now(UTC)) is None  # not since then
    provider.collect(ref)


def test_expire_kills_a_running_script(provider: LocalProvider) -> None:
    request = ScriptRequest(script="echo started; sleep 60", timeout_seconds=600)
    ref = provider.send(provider.prepare([LOCALHOST], request).chunks[0], request)
    time.sleep(0.2)
    [result] = provider.expire(ref, ["localhost"])
    assert result.status is ResultStatus.TIMED_OUT
    assert "deadline" in (result.error or "")
    assert provider.poll(ref).results == [result]


def test_unknown_command_is_an_error_not_a_hang(provider: LocalProvider) -> None:
    request = ScriptRequest(script="true")
    ref = provider.send(provider.prepare([LOCALHOST], request).chunks[0], request)
    stranger = ref.model_copy(update={"command_id": "local-started-elsewhere"})
    [result] = provider.poll(stranger).results
    assert result.status is ResultStatus.ERROR
    assert "another process" in (result.error or "")
    provider.collect(ref)


def test_script_files_are_removed_after_the_result(provider: LocalProvider) -> None:
    # A rendered script may carry a secret parameter: its directory must not outlive the run.
    result = provider.execute_script(LOCALHOST, "TOKEN='s3cret'; pwd; ls")
    workdir = Path(result.stdout.splitlines()[0])
    assert "script.sh" in result.stdout
    assert workdir.name.startswith("cloudops-local-")
    assert not workdir.exists()


def test_identity_and_inventory(provider: LocalProvider) -> None:
    report = provider.validate_credentials()
    assert report.source is CredentialSource.LOCAL
    assert (report.account_id, report.partition) == ("local", "local")
    assert report.arn.startswith("local:") and report.arn.endswith("@" + socket.gethostname())

    [instance] = provider.discover_instances(DiscoveryFilter())
    assert instance.to_target() == Target(
        instance_id="localhost",
        account_id="local",
        region="local",
        platform=instance.platform,
        name=socket.gethostname(),
    )
    assert instance.ssm_managed and instance.ping_status == "Online"
    assert provider.discover_instances(DiscoveryFilter(accounts=["123456789012"])) == []
    assert provider.discover_instances(DiscoveryFilter(tags={"Env": "prod"})) == []
    assert [a.account_id for a in provider.enumerate_accounts()] == ["local"]
    assert provider.enumerate_regions() == ["local"]


def test_quick_poll_schedule(provider: LocalProvider) -> None:
    schedule = provider.poll_schedule()
    assert schedule.initial_seconds <= 0.5 and schedule.max_seconds <= 1.0
