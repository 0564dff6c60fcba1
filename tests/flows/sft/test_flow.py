"""sft-fixer end to end: a real (temporary) Prefect server, the AWS provider, and the SSM agent
emulator running the real SFT scripts on fake hosts.

A fake host is an emulated instance whose sandbox holds an ``/etc/os-release`` and, on its
PATH, the fake commands of ``tests/flows/scripts/sft_fakes`` (``systemctl`` plays the agent and
enrolls on start, ``dnf``/``rpm`` install into the sandbox). Hosts are brought to a state
(healthy, stopped, ...) by running the real install script in the sandbox before the flow
runs, outside SSM, so the emulator's counters show only what the flow sent.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
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
from pydantic import SecretStr

from blocks import AwsProviderBlock
from flows import sft_fixer
from flows.changes import ChangeSpec
from flows.common.remote_scripts import load_script, render_script
from flows.parsers import SftNeed
from flows.sft.parameters import SftAction, SftFixerInputError
from flows.sft.result import SftFixerResult, SftVerdict
from flows.sft.token import REDACTED, EnrollmentTokenMissingError
from flows.store import Store
from providers.base import Platform, Target
from tests.flows.scripts.test_sft_scripts import COMMON_TOOLS, FAKES, FAMILY_TOOLS, OS_RELEASE
from tests.ssm_emulator import EmulatedInstance, SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

ACCOUNT = "111111111111"
REGION = "us-east-1"
TOKEN = "eyJ0ZWFtIjoic2Z0LWZpeGVyIn0.Fl0wT0k3n-must-never-leak_" + "q" * 16
# Only for building hosts before a run: never the token a run is given.
SETUP_TOKEN = "setup-only-token-for-building-fake-hosts-0123456789"
TOKEN_BLOCK = "sft-fixer-test-token"
QUICK = {"verify_delay_seconds": 0.1, "detect_timeout_seconds": 60}
# Calls of fake commands that only look at a host.
READ_ONLY = ("systemctl is-active", "rpm -q", "dpkg-query", "ip -4 route get", "hostname -I")


class SftHost:
    """An emulated RHEL instance with the SFT fakes on its PATH.

    ``fake_env`` is set for every fake command, so a host can behave badly on purpose
    (``FAKE_SFTD_ENROLLS=0``: an agent that never enrolls). ``leak_token_on_start`` makes its
    ``systemctl`` print the enrollment token file to stderr, as a careless host tool might.
    """

    def __init__(
        self,
        instance: EmulatedInstance,
        *,
        leak_token_on_start: bool = False,
        **fake_env: str,
    ) -> None:
        self.instance = instance
        self.calls_log = instance.root / "fake-calls.log"
        instance.write_file("/etc/os-release", OS_RELEASE["rhel"])
        exports = {"FAKE_CALLS_LOG": str(self.calls_log), **fake_env}
        header = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
        for tool in {*COMMON_TOOLS, *FAMILY_TOOLS["rpm"], "dpkg-query"}:
            body = header
            if tool == "systemctl" and leak_token_on_start:
                body += (
                    'case "$*" in *start*) cat "$CLOUDOPS_ROOT/var/lib/sftd/enrollment.token" '
                    ">&2 2>/dev/null ;; esac\n"
                )
            instance.fake_command(tool, body + f'exec {shlex.quote(str(FAKES / tool))} "$@"\n')

    @property
    def id(self) -> str:
        return self.instance.instance_id

    @property
    def target(self) -> Target:
        return Target(
            instance_id=self.id,
            account_id=self.instance.account_id,
            region=self.instance.region,
            name=self.instance.name,
        )

    def bring_to(self, state: str) -> SftHost:
        """``missing`` (no agent), ``healthy``, ``stopped`` (enrolled, service stopped) or
        ``unenrolled`` (running, no device token), by running the real scripts here."""
        if state != "missing":
            enrolls = "0" if state == "unenrolled" else "1"
            script = render_script(
                load_script("linux/sft_install.sh"), {"SFT_ENROLLMENT_TOKEN": SETUP_TOKEN}
            )
            done = self._bash(script, FAKE_SFTD_ENROLLS=enrolls)
            assert done.returncode == 0, done.stderr
        if state == "stopped":
            assert self._bash("systemctl stop sftd").returncode == 0
        self.calls_log.write_text("")
        return self

    def _bash(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            env={
                "PATH": f"{self.instance.bin}{os.pathsep}{os.environ['PATH']}",
                "CLOUDOPS_ROOT": str(self.instance.root),
                "HOME": str(self.instance.home),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def changing_calls(self) -> list[str]:
        """Calls of fake commands since the host was built, other than look-ups."""
        calls = self.calls_log.read_text().splitlines()
        return [c for c in calls if not c.startswith(READ_ONLY)]

    def files(self) -> dict[str, bytes]:
        """The host's files, without the agent emulator's working area and the call log."""
        root = self.instance.root
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file()
            and not p.relative_to(root).as_posix().startswith("var/lib/amazon/")
            and p != self.calls_log
        }

    def file(self, path: str) -> Path:
        return self.instance.root / path.lstrip("/")

    def enrollments(self) -> int:
        log = self.file("/var/log/fake-sftd.log")
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFT_ENROLLMENT_TOKEN", raising=False)


@pytest.fixture
def provider_slug(ssm_world: SsmWorld) -> Iterator[str]:
    """A saved AWS provider block whose keys act in ``ACCOUNT`` of the emulated world."""
    keys = ssm_world.credentials(ACCOUNT)
    AwsProviderBlock(
        environment="com",
        access_key_id=SecretStr(keys.access_key_id),
        secret_access_key=SecretStr(keys.secret_access_key),
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
    ).save("sft-fixer-tests", overwrite=True)
    yield "aws-provider/sft-fixer-tests"
    AwsProviderBlock.delete("sft-fixer-tests")


@pytest.fixture
def token_block() -> Iterator[str]:
    """The enrollment token saved as a Prefect Secret block."""
    Secret(value=TOKEN).save(TOKEN_BLOCK, overwrite=True)
    yield TOKEN_BLOCK
    Secret.delete(TOKEN_BLOCK)


def host(world: SsmWorld, state: str, **options: object) -> SftHost:
    instance = world.add_instance(account_id=ACCOUNT, region=REGION, name=f"sft-{state}")
    return SftHost(instance, **options).bring_to(state)  # type: ignore[arg-type]


def sent_scripts(world: SsmWorld, instance_id: str) -> list[str]:
    """Which SFT script each command sent to an instance was, in order."""
    names = ("sft_install", "sft_reset", "sft_detect")
    return [
        name
        for command in world.commands
        if instance_id in command.instance_ids
        for name in names
        if _is_script(command.script, name)
    ]


def _is_script(text: str, name: str) -> bool:
    # Each bundled script names itself in its header comment or its script_name variable.
    markers = {
        "sft_detect": "is it installed, running and enrolled?",
        "sft_install": 'script_name="sft_install"',
        "sft_reset": 'script_name="sft_reset"',
    }
    return markers[name] in text


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
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"sft-fixer-results", "sft-fixer-summary", "sft-fixer-detect-linux-progress"} <= keys


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


def test_the_token_appears_nowhere_after_a_run(
    ssm_world: SsmWorld, provider_slug: str, token_block: str, data_dir: Path
) -> None:
    missing = host(ssm_world, "missing", leak_token_on_start=True)
    stopped = host(ssm_world, "stopped", leak_token_on_start=True)

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
    # The token did travel: in the scripts sent (which SSM's command history keeps) ...
    sent = [c for c in ssm_world.commands if _is_script(c.script, "sft_install")]
    assert sent and TOKEN in sent[0].script
    # ... and back, in the output of the leaky systemctl, where the flow redacted it.
    installed = Store.default().latest_executions(None, "sft-fixer", "install")
    assert REDACTED in installed[missing.id].stderr

    flow_run_id = state.state_details.flow_run_id
    seen = [result.model_dump_json(), Path(result.report_path).read_text()]
    seen += _store_contents(data_dir)
    seen += _prefect_records(flow_run_id)
    leaks = [text[:200] for text in seen if TOKEN in text]
    assert leaks == []


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
