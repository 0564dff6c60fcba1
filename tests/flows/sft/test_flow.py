"""sft-fixer end to end: a real (temporary) Prefect server, the AWS provider, and the SSM agent
emulator running the real SFT scripts on fake hosts.

A fake host (``tests/flows/sft/hosts.py``) is an emulated instance whose sandbox holds an
``/etc/os-release`` and, on its PATH, the fake commands of ``tests/flows/scripts/sft_fakes``
(``systemctl`` plays the agent and enrolls on start, ``dnf``/``rpm`` install into the sandbox).
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from pathlib import Path
from uuid import UUID

import pytest
from moto.ssm.models import ssm_backends
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from prefect.exceptions import ParameterTypeError
from prefect.logging.handlers import APILogHandler

from flows import sft_fixer
from flows.changes import ChangeSpec
from flows.parsers import SftNeed
from flows.sft.parameters import SftAction, SftFixerInputError
from flows.sft.result import SftFixerResult, SftVerdict
from flows.sft.token import REDACTED, EnrollmentTokenMissingError
from flows.store import Store
from providers.base import Platform, Target
from tests.flows.sft.hosts import (
    ACCOUNT,
    QUICK,
    REGION,
    TOKEN,
    host,
    sent_scripts,
)
from tests.prefect_artifacts import read_artifacts
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")


def test_auto_fixes_each_host_as_it_needs_and_leaves_the_healthy_one_alone(
    ssm_world: SsmWorld, provider_slug: str, token_block: str, data_dir: Path
) -> None:
    missing = host(ssm_world, "missing")
    stopped = host(ssm_world, "stopped")
    unenrolled = host(ssm_world, "unenrolled")
    healthy = host(ssm_world, "healthy")
    offline = host(ssm_world, "missing")
    ssm_world.set_offline(offline.id)
    healthy_files = healthy.files()
    assert stopped.enrollments() == 1

    result = sft_fixer(
        instances=[h.target for h in (missing, stopped, unenrolled, healthy, offline)],
        action="auto",
        provider=provider_slug,
        token_block=token_block,
        **QUICK,
    )

    verdicts = {o.instance_id: o.verdict for o in result.outcomes}
    assert verdicts == {
        missing.id: SftVerdict.FIXED,
        stopped.id: SftVerdict.FIXED,
        unenrolled.id: SftVerdict.FIXED,
        healthy.id: SftVerdict.ALREADY_HEALTHY,
        offline.id: SftVerdict.NOT_REACHABLE,
    }
    # Missing: installed from the repository, then enrolled on its first start.
    fixed = result.outcome(missing.id)
    assert fixed.action_taken is SftAction.INSTALL
    assert fixed.before.needs is SftNeed.INSTALL and fixed.after.healthy
    assert "dnf -y -q install scaleft-server-tools" in missing.changing_calls()
    assert sent_scripts(ssm_world, missing.id) == ["sft_detect", "sft_install", "sft_detect"]
    # Stopped: reset, which deletes the device token so the agent enrolls again.
    assert result.outcome(stopped.id).action_taken is SftAction.RESET
    assert result.outcome(stopped.id).before.summary == "agent installed but service stopped"
    assert sent_scripts(ssm_world, stopped.id) == ["sft_detect", "sft_reset", "sft_detect"]
    assert stopped.enrollments() == 2
    # Running but never enrolled (no device token): reset as well.
    assert result.outcome(unenrolled.id).action_taken is SftAction.RESET
    assert unenrolled.file("/var/lib/sftd/device.token").exists()
    # Healthy: looked at once, nothing changed on it.
    assert result.outcome(healthy.id).action_taken is None
    assert sent_scripts(ssm_world, healthy.id) == ["sft_detect"]
    assert healthy.changing_calls() == []
    assert healthy.files() == healthy_files
    # Offline: nothing sent; the reason comes from SSM's view of the agent.
    assert ssm_world.send_commands_per_instance[offline.id] == 0
    assert "ConnectionLost" in result.outcome(offline.id).reason

    report = Path(result.report_path)
    assert report.parent == data_dir / "reports"
    assert report.name.startswith("sft_fixer_adhoc_") and report.suffix == ".md"
    assert "| fixed |" in report.read_text() and "already_healthy" in report.read_text()
    recorded = _verdict_records(result)
    assert recorded[missing.id] == "fixed" and recorded[healthy.id] == "already_healthy"
    wanted = {"sft-fixer-results", "sft-fixer-summary", "sft-fixer-detect-linux-progress"}
    assert {a.key for a in read_artifacts(keys=wanted)} == wanted


def _verdict_records(result: SftFixerResult) -> dict[str, str]:
    store = Store.default()
    executions = store.latest_executions(result.change_number, "sft-fixer", "verdict")
    return {i: e.parsed["verdict"] for i, e in executions.items()}


@pytest.mark.parametrize("action", ["install", "reset", "auto"])
def test_without_a_token_nothing_is_sent(
    ssm_world: SsmWorld, provider_slug: str, action: str
) -> None:
    stopped = host(ssm_world, "stopped")

    with pytest.raises(EnrollmentTokenMissingError) as refused:
        sft_fixer(
            instances=[stopped.target],
            action=action,
            provider=provider_slug,
            token_block="sft-token-nobody-saved",
            **QUICK,
        )

    message = str(refused.value)
    assert "'sft-token-nobody-saved'" in message and "SFT_ENROLLMENT_TOKEN" in message
    assert "action=detect" in message
    assert ssm_world.calls[("ssm", "SendCommand")] == 0
    assert stopped.changing_calls() == []


def test_the_token_from_the_environment_is_used_when_no_block_is_saved(
    ssm_world: SsmWorld,
    provider_slug: str,
    monkeypatch: pytest.MonkeyPatch,
    asserting_events_worker: EventsWorker,
) -> None:
    monkeypatch.setenv("SFT_ENROLLMENT_TOKEN", f"  {TOKEN}\n")
    never_enrolls = host(ssm_world, "stopped", FAKE_SFTD_ENROLLS="0")

    result = sft_fixer(
        instances=[never_enrolls.target],
        action="reset",
        provider=provider_slug,
        token_block="sft-token-nobody-saved",
        verify_attempts=2,
        **QUICK,
    )

    # The token reached the host, stripped of the spaces around it ...
    token_file = never_enrolls.file("/var/lib/sftd/enrollment.token")
    assert token_file.read_text() == TOKEN + "\n"
    # ... but this agent never enrolls: failed, with the reason of the last detection, after
    # detecting twice.
    [outcome] = result.outcomes
    assert outcome.verdict is SftVerdict.FAILED
    assert outcome.reason == (
        "after reset: agent installed but not enrolled (enrollment token present, no device token)"
    )
    assert sent_scripts(ssm_world, never_enrolls.id) == [
        "sft_detect",
        "sft_reset",
        "sft_detect",
        "sft_detect",
    ]
    # The failure is announced for automations, with counts and no token.
    asserting_events_worker.wait_until_empty()
    events = [e for e in AssertingEventsClient.last.events if e.event == "cloudops.sft.failed"]
    [event] = events
    assert event.payload["counts"] == {"failed": 1}
    assert TOKEN not in event.model_dump_json()


def test_the_instances_read_the_token_themselves_and_it_travels_nowhere_else(
    ssm_world: SsmWorld, provider_slug: str, token_block: str, data_dir: Path
) -> None:
    missing = host(ssm_world, "missing")
    stopped = host(ssm_world, "stopped")

    state = sft_fixer(
        instances=[missing.target, stopped.target],
        action="auto",
        provider=provider_slug,
        token_block=token_block,
        return_state=True,
        **QUICK,
    )
    result: SftFixerResult = state.result()

    assert {o.verdict for o in result.outcomes} == {SftVerdict.FIXED}
    assert sent_scripts(ssm_world, missing.id)[1] == "sft_install"
    assert sent_scripts(ssm_world, stopped.id)[1] == "sft_reset"
    # Each instance read it once, decrypted, from the parameter the flow made for this run ...
    flow_run_id = state.state_details.flow_run_id
    parameter = f"/cloudops-flows/sft-enrollment-token/{flow_run_id}"
    reads = sorted((r.instance_id, r.name, r.decrypted, r.answer) for r in ssm_world.secret_reads)
    assert reads == sorted((h.id, parameter, True, "value") for h in (missing, stopped))
    assert missing.file("/var/lib/sftd/enrollment.token").exists() is False  # enrolled: gone
    assert stopped.enrollments() == 2
    # ... which is gone now the scripts have run.
    assert ssm_backends[ACCOUNT][REGION].get_parameter(parameter) is None
    leaks = [place for place, text in _what_aws_and_the_instances_keep(ssm_world) if TOKEN in text]
    assert leaks == []
    seen = [result.model_dump_json(), Path(result.report_path).read_text()]
    seen += _store_contents(data_dir)
    seen += _prefect_records(flow_run_id)
    assert [text[:200] for text in seen if TOKEN in text] == []


def _what_aws_and_the_instances_keep(world: SsmWorld) -> list[tuple[str, str]]:
    """Every command as ``ListCommands`` shows it (parameters, comment), every output an
    instance gave, and every script file the agent wrote on an instance."""
    now = time.time()
    kept = [(f"command {c.command_id}", json.dumps(c.summary(now))) for c in world.commands]
    for command in world.commands:
        for invocation in command.invocations.values():
            outcome = invocation.outcome
            assert outcome is not None, "an invocation still running"
            kept.append((f"output of {invocation.instance_id}", outcome.stdout + outcome.stderr))
    scripts = [
        path
        for command in world.commands
        for instance_id in command.instance_ids
        for path in world.instance(instance_id).root.rglob("_script.sh")
    ]
    assert len(scripts) >= len(world.commands), "the agent wrote no script file to look in"
    kept += [(str(path), path.read_text()) for path in scripts]
    return kept


@pytest.mark.parametrize("leak", ["plain", "base64", "split"])
def test_a_token_a_host_prints_back_is_redacted_from_what_the_flow_keeps(
    ssm_world: SsmWorld, provider_slug: str, token_block: str, data_dir: Path, leak: str
) -> None:
    missing = host(ssm_world, "missing", leak=leak)

    state = sft_fixer(
        instances=[missing.target],
        provider=provider_slug,
        token_block=token_block,
        action="auto",
        return_state=True,
        **QUICK,
    )

    assert {o.verdict for o in state.result().outcomes} == {SftVerdict.FIXED}
    installed = Store.default().latest_executions(None, "sft-fixer", "install")
    assert REDACTED in installed[missing.id].stderr
    seen = _store_contents(data_dir) + _prefect_records(state.state_details.flow_run_id)
    assert [text[:200] for text in seen if TOKEN in _unwrapped(text)] == []


def _unwrapped(text: str) -> str:
    """``text`` as a person would read the token out of it: without line breaks and colour
    codes, and with every base64 run decoded."""
    plain = re.sub(r"\x1b\[[0-9;]*m|\s", "", text)
    decoded = [plain]
    for run in re.findall(r"[A-Za-z0-9+/]{24,}={0,2}", plain):
        for start in range(4):  # a run cut by a redaction starts anywhere in a group
            part = run[start:]
            try:
                decoded.append(base64.b64decode(part + "=" * (-len(part) % 4)).decode("latin-1"))
            except ValueError:
                continue
    return "\n".join(decoded)


def _store_contents(data_dir: Path) -> list[str]:
    """Every file of the data directory as raw bytes (database, journal, reports), and every
    row of every table of the store's database."""
    seen = [p.read_bytes().decode("latin-1") for p in data_dir.rglob("*") if p.is_file()]
    database = data_dir / "cloudops.db"
    assert database.exists()
    with sqlite3.connect(database) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        assert {"execution", "workflow_run", "sent_command"} <= set(tables)
        for table in tables:
            seen += [repr(row) for row in connection.execute(f'SELECT * FROM "{table}"')]
    return seen


def _prefect_records(flow_run_id: UUID) -> list[str]:
    """The flow run (with its parameters), its task runs, logs and artifacts, as the API
    returns them."""
    # Logs reach the API from a background worker: wait until it has sent them all.
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert task_runs, "no task runs to scan"
    assert logs, "no logs to scan"
    assert artifacts, "no artifacts to scan"
    return [
        run.model_dump_json(),
        *(t.model_dump_json() for t in task_runs),
        *(log.model_dump_json() for log in logs),
        *(a.model_dump_json() for a in artifacts),
    ]


def test_windows_without_the_agent_is_skipped_not_silently_passed(
    ssm_world: SsmWorld, provider_slug: str, token_block: str
) -> None:
    windows = ssm_world.add_instance(account_id=ACCOUNT, region=REGION, platform="windows")
    # No PowerShell here: a fake pwsh answers as sft_detect.ps1 does on a host without the
    # service.
    windows.fake_command(
        "pwsh",
        "printf '%s\\n' SFT_PLATFORM=windows SFT_INSTALLED=no SFT_TYPE=none "
        "SFT_STATUS=not_installed SFT_ENROLLMENT_TOKEN=missing SFT_DEVICE_TOKEN=missing "
        "SFT_CONFIG=missing 'WINDOWS_VERSION=Microsoft Windows Server 2022 Datacenter'\n",
    )
    target = Target(
        instance_id=windows.instance_id,
        account_id=ACCOUNT,
        region=REGION,
        platform=Platform.WINDOWS,
    )

    result = sft_fixer(
        instances=[target], action="auto", provider=provider_slug, token_block=token_block, **QUICK
    )

    [outcome] = result.outcomes
    assert outcome.verdict is SftVerdict.SKIPPED
    assert outcome.reason.startswith("no Windows installer configured")
    assert outcome.before.needs is SftNeed.INSTALL
    [detect] = [c for c in ssm_world.commands if windows.instance_id in c.instance_ids]
    assert detect.document.name == "AWS-RunPowerShellScript"
    assert "scaleft-server-tools" in detect.script and "Get-Service" in detect.script


@pytest.mark.parametrize("action", ["detect", None], ids=["detect", "no action given"])
def test_detect_needs_no_token_and_changes_nothing(
    ssm_world: SsmWorld, provider_slug: str, action: str | None
) -> None:
    missing = host(ssm_world, "missing")
    stopped = host(ssm_world, "stopped")
    before = {h.id: h.files() for h in (missing, stopped)}
    asked = {"action": action} if action else {}  # a caller naming no action changes nothing

    result = sft_fixer(
        instances=[missing.target, stopped.target],
        provider=provider_slug,
        token_block="sft-token-nobody-saved",
        **asked,
        **QUICK,
    )

    assert result.outcome(missing.id).verdict is SftVerdict.UNHEALTHY
    assert result.outcome(missing.id).reason == "agent not installed; auto would install"
    assert result.outcome(stopped.id).reason == (
        "agent installed but service stopped; auto would reset"
    )
    for h in (missing, stopped):
        assert sent_scripts(ssm_world, h.id) == ["sft_detect"]
        assert h.changing_calls() == []
        assert h.files() == before[h.id]


def test_more_instances_than_the_cap_are_refused_unless_raised_on_purpose(
    ssm_world: SsmWorld, provider_slug: str
) -> None:
    # Well-formed ids SSM has never heard of.
    targets = [
        Target(instance_id=f"i-0abc0000000000{n:03x}", account_id=ACCOUNT, region=REGION)
        for n in range(6)
    ]

    with pytest.raises(SftFixerInputError, match="more than max_instances=5") as refused:
        sft_fixer(instances=targets, action="detect", provider=provider_slug, **QUICK)
    assert "pass max_instances=6" in str(refused.value)
    assert ssm_world.calls[("ssm", "SendCommand")] == 0

    result = sft_fixer(
        instances=targets, action="detect", provider=provider_slug, max_instances=6, **QUICK
    )
    assert {o.verdict for o in result.outcomes} == {SftVerdict.NOT_REACHABLE}
    assert len(result.outcomes) == 6


def test_malformed_instances_are_refused_before_anything_runs(
    ssm_world: SsmWorld, provider_slug: str
) -> None:
    bad = [
        Target(instance_id="i-12345", account_id=ACCOUNT, region=REGION),
        Target(instance_id="i-0123456789abcdef0", account_id="12345678901", region=REGION),
    ]

    with pytest.raises(SftFixerInputError) as refused:
        sft_fixer(instances=bad, action="detect", provider=provider_slug, **QUICK)

    message = str(refused.value)
    assert "'i-12345' is not an EC2 instance id" in message
    assert "leading zeros" in message
    assert ssm_world.calls[("ssm", "SendCommand")] == 0


def test_a_stored_change_gives_the_instances(
    ssm_world: SsmWorld, provider_slug: str, token_block: str
) -> None:
    healthy = host(ssm_world, "healthy")
    Store.default().save_change(ChangeSpec(change_number="CHG0042", targets=[healthy.target]))

    result = sft_fixer(
        instances="CHG0042",
        action="auto",
        provider=provider_slug,
        token_block=token_block,
        **QUICK,
    )

    assert result.change_number == "CHG0042"
    assert [o.verdict for o in result.outcomes] == [SftVerdict.ALREADY_HEALTHY]
    assert Path(result.report_path).name.startswith("sft_fixer_CHG0042_")
    steps = {r.step for r in Store.default().runs_for_change("CHG0042")}
    assert steps == {"detect", "verdict"}
    assert all(c.comment.startswith("CHG0042 sft-fixer detect") for c in ssm_world.commands)


def test_an_unknown_action_is_refused_before_anything_runs(
    ssm_world: SsmWorld, provider_slug: str
) -> None:
    healthy = host(ssm_world, "healthy")

    with pytest.raises(ParameterTypeError, match="action"):
        sft_fixer(instances=[healthy.target], action="repair", provider=provider_slug, **QUICK)

    assert ssm_world.calls[("ssm", "SendCommand")] == 0


def test_a_token_with_a_line_break_inside_is_refused_without_being_quoted(
    ssm_world: SsmWorld, provider_slug: str
) -> None:
    stopped = host(ssm_world, "stopped")
    broken = TOKEN[:30] + "\n" + TOKEN[30:]
    Secret(value=broken).save("sft-fixer-broken-token", overwrite=True)
    try:
        with pytest.raises(SftFixerInputError, match="copy it again") as refused:
            sft_fixer(
                instances=[stopped.target],
                action="reset",
                provider=provider_slug,
                token_block="sft-fixer-broken-token",
                **QUICK,
            )
    finally:
        Secret.delete("sft-fixer-broken-token")

    assert TOKEN[:30] not in str(refused.value) and TOKEN[30:] not in str(refused.value)
    assert ssm_world.calls[("ssm", "SendCommand")] == 0
