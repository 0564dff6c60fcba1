"""Fake Linux servers in a sandbox, on which the remote scripts run for real with bash.

A fake server is a directory that the scripts see as ``/`` through ``$CLOUDOPS_ROOT`` plus a
``bin`` that is the whole of PATH: links to a few real base tools (awk, sed, grep, sort, ...)
and fake ``uname``, ``dnf``, ``apt-get``, ``df``, ``falconctl``, ``reboot``, ... that print what
a real server of that kind prints and write each call they get to a log, so a test can assert
what a script did and did not run. A command that is not faked does not exist for the script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flows.common.remote_scripts import load_script, render_script

BASE_TOOLS = (
    "bash",
    "awk",
    "sed",
    "grep",
    "tr",
    "head",
    "tail",
    "cat",
    "sort",
    "cut",
    "wc",
    "mkdir",
    "mv",
    "rm",
    "cp",
    "chmod",
    "tee",
    "timeout",
    "sha256sum",
    # What the scripts' folder checks use (lib/change_folder.sh); coreutils on every server.
    "id",
    "stat",
    "mktemp",
)
SENT_SCRIPT = "sent-script.sh"
# Fixed time for reports: Tue May 14 10:00:00 UTC 2024.
FIXED_EPOCH = "1715680800"


@dataclass
class LinuxSandbox:
    """One fake server: ``root`` is its ``/``, ``bin`` its PATH, ``calls_log`` what ran."""

    base: Path
    root: Path
    bin: Path
    calls_log: Path

    def fake(self, name: str, body: str, *, directory: Path | None = None) -> Path:
        """An executable ``name`` that logs its arguments and then runs the bash ``body``."""
        path = (directory or self.bin) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'#!{shutil.which("bash")}\nprintf \'%s\\n\' "{name} $*" >>"$FAKE_CALLS"\n{body}\n'
        )
        path.chmod(0o755)
        return path

    def printing(self, name: str, text: str, exit_code: int = 0) -> Path:
        """A fake command that prints ``text`` whatever its arguments."""
        return self.fake(name, f"cat <<'FAKE_OUTPUT'\n{text}\nFAKE_OUTPUT\nexit {exit_code}")

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()

    def write(self, path: str, content: str) -> Path:
        """A file of the fake server, by its absolute path on the server."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return target

    def server_path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def run(
        self, script: str, params: dict[str, str], *, script_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a bundled script (``linux/qc.sh``) with its quoted parameter header, as a flow
        sends it."""
        body = script_text if script_text is not None else load_script(script)
        rendered = self.base / SENT_SCRIPT
        rendered.write_text(render_script(body, params))
        return self.run_file(rendered)

    def run_file(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": str(self.bin),
            "CLOUDOPS_ROOT": str(self.root),
            "FAKE_CALLS": str(self.calls_log),
            "HOME": str(self.base / "home"),
            "TZ": "UTC",
            "LC_ALL": "C",
        }
        return subprocess.run(
            [str(self.bin / "bash"), str(path), *args],
            env=env,
            cwd=self.base / "cwd",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def calls(self, name: str | None = None) -> list[str]:
        """The fake commands run so far, as ``name args``; only those of ``name`` if given."""
        if not self.calls_log.exists():
            return []
        lines = self.calls_log.read_text().splitlines()
        return [line for line in lines if name is None or line.split(" ", 1)[0] == name]

    def files(self) -> set[str]:
        """Every file and directory under the sandbox (but the script a test sent), to prove
        that a refused run wrote nothing."""
        return {str(p.relative_to(self.base)) for p in self.base.rglob("*")} - {SENT_SCRIPT}


def _new_sandbox(base: Path) -> LinuxSandbox:
    sandbox = LinuxSandbox(
        base=base, root=base / "server", bin=base / "bin", calls_log=base / "calls.log"
    )
    for directory in (sandbox.root, sandbox.bin, base / "home", base / "cwd"):
        directory.mkdir(parents=True)
    for tool in BASE_TOOLS:
        real = shutil.which(tool)
        assert real, f"the tests need {tool} on this machine"
        os.symlink(real, sandbox.bin / tool)
    real_date = shutil.which("date")
    sandbox.fake("date", f'exec {real_date} -d "@{FIXED_EPOCH}" "$@"')
    sandbox.fake("sync", "exit 0")
    return sandbox


RHEL_KERNEL = "4.18.0-553.5.1.el8_10.x86_64"
RHEL_OS_RELEASE = """NAME="Red Hat Enterprise Linux"
VERSION="8.10 (Ootpa)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="8.10"
PRETTY_NAME="Red Hat Enterprise Linux 8.10 (Ootpa)"
"""
# Long repository names make yum wrap a line: the package alone, its version on the next.
RHEL_KERNEL_LISTING = """Updating Subscription Management repositories.
Last metadata expiration check: 0:00:03 ago on Tue 14 May 2024 10:00:00 AM UTC.
Available Packages
kernel.x86_64                4.18.0-513.24.1.el8_9              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.5.1.el8_10              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.8.1.el8_10              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.45.1.el8_10             rhel-8-for-x86_64-baseos-rpms
kernel.x86_64
                 4.18.0-553.16.1.el8_10        rhel-8-for-x86_64-baseos-eus-rpms-extended"""

AL2_KERNEL = "4.14.343-261.564.amzn2.x86_64"
AL2_OS_RELEASE = """NAME="Amazon Linux"
VERSION="2"
ID="amzn"
ID_LIKE="centos rhel fedora"
VERSION_ID="2"
PRETTY_NAME="Amazon Linux 2"
"""
AL2_KERNEL_LISTING = """Loaded plugins: extras_suggestions, langpacks, priorities, update-motd
Available Packages
kernel.x86_64                    4.14.345-262.561.amzn2                    amzn2-core
kernel.x86_64                    4.14.348-265.562.amzn2                    amzn2-core"""

UBUNTU_KERNEL = "5.15.0-101-generic"
UBUNTU_OS_RELEASE = """PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
"""
UBUNTU_PACKAGES = """linux-image-5.15.0-97-generic
linux-image-5.15.0-101-generic
linux-image-5.15.0-102-generic
linux-image-5.15.0-105-generic
linux-image-5.15.0-105-lowlatency
linux-image-5.15.0-1050-aws
linux-image-unsigned-5.15.0-105-generic
linux-image-generic
linux-image-virtual"""

GB_KB = 1024 * 1024


def fake_df(sandbox: LinuxSandbox, var_free_kb: int) -> None:
    sandbox.printing(
        "df",
        "Filesystem               1024-blocks    Used Available Capacity Mounted on\n"
        f"/dev/mapper/rootvg-varlv    10475520 1048576 {var_free_kb}      10% /var",
    )


def fake_crowdstrike(
    sandbox: LinuxSandbox,
    rfm_state: str = "false",
    sensor: str = "active",
    *,
    on_path: bool = True,
) -> None:
    """falconctl on PATH, or only at /opt/CrowdStrike/falconctl as the sensor installs it."""
    body = f"""case "$*" in
    *--rfm-state*) echo "rfm-state={rfm_state}, rfm-reason=None, code=0x0." ;;
    *--version*) echo "version = 7.10.16303.0" ;;
    *) exit 1 ;;
esac"""
    directory = None if on_path else sandbox.server_path("/opt/CrowdStrike")
    sandbox.fake("falconctl", body, directory=directory)
    sandbox.fake(
        "systemctl",
        f"""if [ "${{1:-}} ${{2:-}}" = "is-active falcon-sensor" ]; then
    echo {sensor}
    [ {sensor} = active ]
    exit
fi
exit 3""",
    )


def _common(sandbox: LinuxSandbox, host: str, kernel: str, os_release: str) -> None:
    sandbox.printing("hostname", host)
    sandbox.fake(
        "uname",
        f"""case "${{1:-}}" in
    -r) echo {kernel} ;;
    -m) echo x86_64 ;;
    -n) echo {host} ;;
    *) echo Linux ;;
esac""",
    )
    sandbox.printing("uptime", "2024-04-02 06:12:44")
    sandbox.write("/etc/os-release", os_release)
    fake_df(sandbox, 7 * GB_KB)
    # Recorded when called, so a test can prove a script never reboots.
    for name in ("reboot", "shutdown", "grubby"):
        sandbox.fake(name, "exit 0")


def rpm_package_manager(
    sandbox: LinuxSandbox, name: str, listing: str, makecache_exit: int = 0, message: str = ""
) -> None:
    """A fake dnf or yum: makecache, list available kernel, install."""
    sandbox.fake(
        name,
        f"""case "$*" in
    *makecache*)
        cat <<'FAKE_OUTPUT'
{message or "Metadata cache created."}
FAKE_OUTPUT
        exit {makecache_exit} ;;
    *list*available*kernel*)
        cat <<'FAKE_OUTPUT'
{listing}
FAKE_OUTPUT
        ;;
    *install*) exit "${{FAKE_INSTALL_EXIT:-0}}" ;;
    *) exit 1 ;;
esac""",
    )


def build_rhel_host(base: Path) -> LinuxSandbox:
    sandbox = _new_sandbox(base)
    _common(sandbox, "rhel8-app01", RHEL_KERNEL, RHEL_OS_RELEASE)
    rpm_package_manager(sandbox, "dnf", RHEL_KERNEL_LISTING)
    sandbox.fake("yum", "exit 1")  # RHEL 8 has both; the engine must use dnf
    sandbox.fake("rpm", "exit 0")
    fake_crowdstrike(sandbox)
    return sandbox


def build_al2_host(base: Path) -> LinuxSandbox:
    sandbox = _new_sandbox(base)
    _common(sandbox, "ip-10-0-1-15.ec2.internal", AL2_KERNEL, AL2_OS_RELEASE)
    rpm_package_manager(sandbox, "yum", AL2_KERNEL_LISTING)
    sandbox.fake("rpm", "exit 0")
    fake_crowdstrike(sandbox)
    return sandbox


def apt_get(sandbox: LinuxSandbox, update_output: str, update_exit: int = 0) -> None:
    sandbox.fake(
        "apt-get",
        f"""case "$*" in
    *update*)
        cat <<'FAKE_OUTPUT'
{update_output}
FAKE_OUTPUT
        exit {update_exit} ;;
    *install*) exit "${{FAKE_INSTALL_EXIT:-0}}" ;;
    *) exit 1 ;;
esac""",
    )


def build_ubuntu_host(base: Path) -> LinuxSandbox:
    sandbox = _new_sandbox(base)
    _common(sandbox, "ubuntu-jump01", UBUNTU_KERNEL, UBUNTU_OS_RELEASE)
    apt_get(
        sandbox,
        "Hit:1 http://us-east-1.ec2.archive.ubuntu.com/ubuntu jammy InRelease\n"
        "Get:2 http://us-east-1.ec2.archive.ubuntu.com/ubuntu jammy-updates InRelease [128 kB]\n"
        "Reading package lists...",
    )
    # apt-cache search applies the script's own regular expression to a package list.
    sandbox.fake(
        "apt-cache",
        f"""[ "${{1:-}} ${{2:-}}" = "search --names-only" ] || exit 100
while read -r package; do
    if printf '%s\\n' "$package" | grep -Eq -- "$3"; then
        echo "$package - Signed kernel image"
    fi
done <<'FAKE_OUTPUT'
{UBUNTU_PACKAGES}
FAKE_OUTPUT""",
    )
    sandbox.fake("dpkg", "exit 0")
    sandbox.remove("grubby")  # Ubuntu boots the newest kernel; grubby is a Red Hat tool
    fake_crowdstrike(sandbox, on_path=False)
    return sandbox
