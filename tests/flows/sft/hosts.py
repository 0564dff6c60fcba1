"""Fake hosts of the sft-fixer flow tests: emulated RHEL instances with the SFT fakes on their
PATH, brought to a state (healthy, stopped, ...) by running the real install script in their
sandbox before the flow runs, outside SSM, so the emulator's counters show only what the flow
sent."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from flows.common.remote_scripts import load_script, render_script
from providers.base import Target
from tests.flows.scripts.test_sft_scripts import COMMON_TOOLS, FAKES, FAMILY_TOOLS, OS_RELEASE
from tests.ssm_emulator import EmulatedInstance, SsmWorld

ACCOUNT = "111111111111"
REGION = "us-east-1"
TOKEN = "eyJ0ZWFtIjoic2Z0LWZpeGVyIn0.Fl0wT0k3n-must-never-leak_" + "q" * 16
# Only for building hosts before a run: never the token a run is given.
SETUP_TOKEN = "setup-only-token-for-building-fake-hosts-0123456789"
TOKEN_BLOCK = "sft-fixer-test-token"
QUICK = {"verify_delay_seconds": 0.1, "detect_timeout_seconds": 60}
# How a careless tool on a host prints the enrollment token file (see SftHost).
_TOKEN_FILE = '"$CLOUDOPS_ROOT/var/lib/sftd/enrollment.token"'
LEAKS = {
    "plain": f"cat {_TOKEN_FILE}",
    "base64": f"{{ printf 'token: '; cat {_TOKEN_FILE}; }} | base64 -w 20",
    "split": f"fold -w 10 {_TOKEN_FILE} | sed 's/^/\\x1b[1m/'",
}
# Calls of fake commands that only look at a host.
READ_ONLY = ("systemctl is-active", "rpm -q", "dpkg-query", "ip -4 route get", "hostname -I")


class SftHost:
    """An emulated RHEL instance with the SFT fakes on its PATH.

    ``fake_env`` is set for every fake command, so a host can behave badly on purpose
    (``FAKE_SFTD_ENROLLS=0``: an agent that never enrolls). ``leak`` makes its ``systemctl``
    print the enrollment token file to stderr on start, as a careless host tool might: as it is
    (``plain``), base64-encoded and wrapped (``base64``), or cut into lines of 10 characters
    with colour codes (``split``).
    """

    def __init__(
        self,
        instance: EmulatedInstance,
        *,
        leak: str | None = None,
        **fake_env: str,
    ) -> None:
        self.instance = instance
        self.calls_log = instance.root / "fake-calls.log"
        instance.write_file("/etc/os-release", OS_RELEASE["rhel"])
        exports = {"FAKE_CALLS_LOG": str(self.calls_log), **fake_env}
        header = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items())
        for tool in {*COMMON_TOOLS, *FAMILY_TOOLS["rpm"], "dpkg-query"}:
            body = header
            if tool == "systemctl" and leak is not None:
                body += f'case "$*" in *start*) {LEAKS[leak]} >&2 2>/dev/null ;; esac\n'
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
            # The install script reads its token from a file here, outside the host's root.
            setup_token = self.instance.sandbox.parent / f"{self.id}.setup-token"
            setup_token.write_text(SETUP_TOKEN + "\n")
            script = render_script(
                load_script("linux/sft_install.sh"),
                {"SFT_TOKEN_SOURCE": "file", "SFT_TOKEN_NAME": str(setup_token)},
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
            and not p.name.startswith(self.calls_log.name)  # the fakes' call records
        }

    def file(self, path: str) -> Path:
        return self.instance.root / path.lstrip("/")

    def enrollments(self) -> int:
        log = self.file("/var/log/fake-sftd.log")
        return len(log.read_text().splitlines()) if log.exists() else 0


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
        if is_script(command.script, name)
    ]


def is_script(text: str, name: str) -> bool:
    # Each bundled script names itself in its header comment or its script_name variable.
    markers = {
        "sft_detect": "is it installed, running and enrolled?",
        "sft_install": 'script_name="sft_install"',
        "sft_reset": 'script_name="sft_reset"',
    }
    return markers[name] in text
