"""Fake Linux servers for the patch window: RHEL 8.10, Amazon Linux 2023 and Ubuntu 22.04 in
SSM emulator sandboxes, whose package manager really installs (files under /boot, a list of
installed kernels), whose boot loader really changes its default entry (grubby), and which
boot the kernel that entry names when the emulator reboots them.

The scripts run for real with bash; only the commands of a server are fakes, and each of them
notes its call in ``/fake/calls.log``. A server's state lives in files under ``/fake``:

    kernel-running       what ``uname -r`` prints
    kernels-installed    one kernel a line (``rpm -q kernel-X`` / ``dpkg -s linux-image-X``)
    kernels-offered      what its repositories offer
    grub-default         the kernel grubby made the default entry (none: newest boots, Ubuntu)
    units/<unit>         active or inactive; no file: not installed
    install-fails        the package manager's error for any install
    falcon-unsupported   kernels CrowdStrike's falcon-kernel-check refuses

Odd servers: ``install_fails``, ``boot_full`` (/boot nearly full), ``lock_held``,
``falcon_unsupported``, ``falcon_stops_on_boot`` (post fails), ``already_on_target``, and the
emulator's own ``boot_falls_back`` and ``agent_never_returns``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from flows.changes import ChangeSpec
from flows.linux_patching.kernels import kernel_sort_key, normalize_kernel
from flows.linux_patching.prep.staging import stage_script
from flows.linux_patching.prep_record import PREP_WORKFLOW, StagedInstance
from flows.linux_patching.qc_report import QcReport
from flows.store import Store
from providers.base import Platform, ResultStatus, ScriptResult, Target
from tests.ssm_emulator import EmulatedInstance, SsmWorld


class Distro(StrEnum):
    RHEL = "rhel"
    AL2023 = "al2023"
    UBUNTU = "ubuntu"


@dataclass(frozen=True)
class DistroFacts:
    os_release: str
    distro: str  # as prep names it
    running: str
    offered: tuple[str, ...]
    target: str
    arch_suffix: str  # on the kernel file names under /boot

    @property
    def group(self) -> str:
        base = {"rhel": "4.18.0-553", "al2023": "6.1.79-99", "ubuntu": "5.15.0-101"}
        return f"{self.distro} - Kernel {base[self.key]}"

    @property
    def key(self) -> str:
        return {"RHEL8.10": "rhel", "AL2023": "al2023", "Ubuntu22.04": "ubuntu"}[self.distro]


DISTROS: dict[Distro, DistroFacts] = {
    Distro.RHEL: DistroFacts(
        'NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="8.10"\n',
        "RHEL8.10",
        "4.18.0-553.5.1.el8_10.x86_64",
        ("4.18.0-553.16.1.el8_10", "4.18.0-553.45.1.el8_10"),
        "4.18.0-553.45.1.el8_10",
        ".x86_64",
    ),
    Distro.AL2023: DistroFacts(
        'NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2023"\n',
        "AL2023",
        "6.1.79-99.167.amzn2023.x86_64",
        ("6.1.102-108.177.amzn2023",),
        "6.1.102-108.177.amzn2023",
        ".x86_64",
    ),
    Distro.UBUNTU: DistroFacts(
        'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n',
        "Ubuntu22.04",
        "5.15.0-101-generic",
        ("5.15.0-105-generic",),
        "5.15.0-105-generic",
        "",
    ),
}

LOG = 'printf \'%s\\n\' "$(basename "$0") $*" >>"$CLOUDOPS_ROOT/fake/calls.log"\n'
F = '"$CLOUDOPS_ROOT/fake'

# The package manager's install, shared by dnf, yum and apt-get: $1 is the kernel.
INSTALL = f"""install_kernel() {{
    if [ -s {F}/install-sleep-until" ]; then
        until [ "$(date +%s)" -ge "$(cat {F}/install-sleep-until")" ]; do sleep 0.2; done
    fi
    if [ -e {F}/install-fails" ]; then cat {F}/install-fails" >&2; exit 1; fi
    grep -qx -- "$1" {F}/kernels-offered" || {{ echo "No match for argument: $1" >&2; exit 1; }}
    grep -qx -- "$1" {F}/kernels-installed" || echo "$1" >>{F}/kernels-installed"
    mkdir -p "$CLOUDOPS_ROOT/boot"
    echo "kernel $1" >"$CLOUDOPS_ROOT/boot/vmlinuz-$1$ARCH"
    echo "Installed: $1"
}}
"""


def _rpm_manager(name: str) -> str:
    return LOG + INSTALL + f"""case "$*" in
    *makecache*) echo "Metadata cache created." ;;
    *install*)
        pkg="${{*: -1}}"
        install_kernel "${{pkg#kernel-}}" ;;
    *list*available*kernel-*)
        pkg="${{*: -1}}"
        grep -qx -- "${{pkg#kernel-}}" {F}/kernels-offered" &&
            echo "kernel.x86_64  ${{pkg#kernel-}}  baseos" ;;
    *list*available*kernel*)
        while read -r k; do echo "kernel.x86_64  $k  baseos"; done <{F}/kernels-offered" ;;
    *history*)
        echo "ID | Command line | Date and time | Action(s) | Altered"
        echo "  7 | install kernel | $(date +%Y-%m-%d) 02:10 | Install | 1" ;;
    *) echo "{name}: unexpected $*" >&2; exit 1 ;;
esac
"""


RPM = LOG + f"""pkg="${{*: -1}}"
case "$pkg" in
    kernel-*) grep -qx -- "${{pkg#kernel-}}" {F}/kernels-installed" ;;
    falcon-sensor) [ -e {F}/units/falcon-sensor" ] ;;
    BESAgent) [ -e {F}/units/besclient" ] ;;
    *) exit 1 ;;
esac
"""

SYSTEMCTL = f"""unit="${{*: -1}}"
unit="${{unit%.service}}"
state="$(cat {F}/units/$unit" 2>/dev/null)"
case "$1" in
    show) [ -n "$state" ] && echo LoadState=loaded || echo LoadState=not-found ;;
    is-active) echo "${{state:-inactive}}"; [ "$state" = active ] ;;
    list-units) ;;
    *) exit 1 ;;
esac
"""

GRUBBY = LOG + f"""case "$1" in
    --set-default)
        image="${{2#/boot/vmlinuz-}}"
        echo "${{image%.x86_64}}" >{F}/grub-default" ;;
    --default-kernel) echo "/boot/vmlinuz-$(cat {F}/grub-default")" ;;
    *) exit 1 ;;
esac
"""

APT_GET = LOG + INSTALL + """case "$*" in
    *update*) echo "Reading package lists..." ;;
    *install*) pkg="${*: -1}"; install_kernel "${pkg#linux-image-}" ;;
    *) exit 1 ;;
esac
"""

APT_CACHE = f"""case "$1" in
    search)
        while read -r k; do
            printf '%s\\n' "linux-image-$k" | grep -Eq -- "$3" &&
                echo "linux-image-$k - Linux kernel"
        done <{F}/kernels-offered" ;;
    policy)
        pkg="${{2#linux-image-}}"
        if grep -qx -- "$pkg" {F}/kernels-offered"; then
            echo "  Candidate: $pkg.1"
        else
            echo "  Candidate: (none)"
        fi ;;
    *) exit 100 ;;
esac
"""

DPKG = LOG + f"""pkg="${{*: -1}}"
grep -qx -- "${{pkg#linux-image-}}" {F}/kernels-installed" || exit 1
echo "Package: $pkg"
echo "Status: install ok installed"
"""

DPKG_QUERY = f"""pkg="${{*: -1}}"
case "$pkg" in
    falcon-sensor) [ -e {F}/units/falcon-sensor" ] && echo "install ok installed" && exit 0 ;;
esac
echo "dpkg-query: no packages found matching $pkg" >&2
exit 1
"""

FALCON_KERNEL_CHECK = f"""kernel="$2"
if grep -qx -- "$kernel" {F}/falcon-unsupported" 2>/dev/null; then
    echo "Host OS Linux $kernel is not supported by Sensor version 17105."
    exit 1
fi
echo "Host OS Linux $kernel is supported by Sensor version 17105."
"""

FALCONCTL = """case "$*" in
    *--rfm-state*) echo "rfm-state=false, rfm-reason=None, code=0x0." ;;
    *--version*) echo "version = 7.10.16303.0" ;;
    *) exit 1 ;;
esac
"""


def _df(boot_free_kb: int) -> str:
    return f"""echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
case "${{*: -1}}" in
    */boot) echo "/dev/nvme0n1p1 1038336 500000 {boot_free_kb} 50% /boot" ;;
    *) echo "/dev/mapper/rootvg-root 20961280 8000000 9000000 41% /" ;;
esac
"""


@dataclass
class WindowServer:
    """One fake server in an emulated instance."""

    instance: EmulatedInstance
    distro: Distro
    hostname: str

    @property
    def facts(self) -> DistroFacts:
        return DISTROS[self.distro]

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    def target(self) -> Target:
        return Target(
            instance_id=self.instance_id,
            account_id=self.instance.account_id,
            region=self.instance.region,
            platform=Platform.LINUX,
            name=self.hostname,
        )

    def read(self, path: str) -> str:
        file = self.instance.root / path.lstrip("/")
        return file.read_text() if file.exists() else ""

    @property
    def running(self) -> str:
        return self.read("/fake/kernel-running").strip()

    def calls(self, command: str | None = None) -> list[str]:
        lines = self.read("/fake/calls.log").splitlines()
        return [c for c in lines if command is None or c.split(" ", 1)[0] == command]

    def write(self, path: str, text: str) -> None:
        self.instance.write_file(path, text)


def _boot(instance: EmulatedInstance, fell_back: bool) -> None:
    """The fake boot loader: the grubby default when it is installed, else the newest installed
    kernel (Ubuntu's GRUB_DEFAULT=0); a boot that falls back keeps the kernel it ran."""
    root = instance.root / "fake"
    if fell_back:
        return
    installed = [k for k in (root / "kernels-installed").read_text().split() if k]
    default = (
        (root / "grub-default").read_text().strip() if (root / "grub-default").exists() else ""
    )
    chosen = default if default in installed else max(installed, key=kernel_sort_key)
    suffix = ".x86_64" if ".el" in chosen or "amzn" in chosen else ""
    (root / "kernel-running").write_text(chosen + suffix + "\n")
    stop = root / "stop-on-boot"
    if stop.exists():
        for unit in stop.read_text().split():
            (root / "units" / unit).write_text("inactive\n")


@dataclass
class HostSpec:
    """How to build one server: its distribution and what is odd about it."""

    distro: Distro
    install_fails: bool = False
    boot_full: bool = False
    lock_held: bool = False
    falcon_unsupported: bool = False
    falcon_stops_on_boot: bool = False
    already_on_target: bool = False
    patchme_by_linux_patcher: bool = False
    install_sleeps_until: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def build_server(
    world: SsmWorld, account: str, region: str, name: str, spec: HostSpec
) -> WindowServer:
    """An emulated instance with a fake server of ``spec`` on it."""
    instance = world.add_instance(account_id=account, region=region, name=name)
    facts = DISTROS[spec.distro]
    running = facts.target + facts.arch_suffix if spec.already_on_target else facts.running
    rpm_based = spec.distro is not Distro.UBUNTU
    files = {
        "/etc/os-release": facts.os_release,
        "/etc/hostname": name + "\n",
        "/proc/uptime": "864000.00 1700000.00\n",
        "/fake/kernel-running": running + "\n",
        "/fake/kernels-installed": normalize_kernel(running) + "\n",
        "/fake/kernels-offered": "".join(k + "\n" for k in facts.offered),
        "/fake/units/falcon-sensor": "active\n",
        "/fake/units/besclient": "active\n",
        "/fake/calls.log": "",
        f"/boot/vmlinuz-{running}": "running kernel\n",
        "/var/lib/amazon/ssm/.keep": "",
    }
    if spec.install_fails:
        files["/fake/install-fails"] = "Error: Transaction test error: file /boot/x conflicts\n"
    if spec.falcon_unsupported:
        files["/fake/falcon-unsupported"] = facts.target + "\n"
    if spec.falcon_stops_on_boot:
        files["/fake/stop-on-boot"] = "falcon-sensor\n"
    if spec.install_sleeps_until is not None:
        files["/fake/install-sleep-until"] = f"{int(spec.install_sleeps_until) + 1}\n"
    if spec.lock_held and rpm_based:
        files["/var/run/yum.pid"] = f"{os.getpid()}\n"  # a process that lives: this test
    for path, text in files.items():
        instance.write_file(path, text)
    commands = {
        "hostname": f"echo {name}\n",
        "uname": f'case "${{1:-}}" in -r) cat {F}/kernel-running" ;; -n) echo {name} ;; '
        "*) echo Linux ;; esac\n",
        "uptime": 'up=$(cut -d. -f1 "$CLOUDOPS_ROOT/proc/uptime")\n'
        'if [ "${1:-}" = -s ]; then date -d "@$(( $(date +%s) - up ))" "+%Y-%m-%d %H:%M:%S";'
        ' else echo " up $up seconds"; fi\n',
        "systemctl": SYSTEMCTL,
        "df": _df(20_000 if spec.boot_full else 512_000),
        "falconctl": FALCONCTL,
        "journalctl": "exit 0\n",
        "dmesg": "exit 0\n",
        "reboot": LOG,
        "shutdown": LOG,
        "fuser": (f'echo " {os.getpid()}"\n' if spec.lock_held else "exit 1\n"),
        **spec.extra,
    }
    if rpm_based:
        commands.update(
            {
                # RHEL 8 and Amazon Linux 2023 both install with dnf.
                "dnf": _rpm_manager("dnf").replace("$ARCH", ".x86_64"),
                "rpm": RPM,
                "grubby": GRUBBY,
                # The emulator's machine has dpkg: these servers do not.
                "dpkg-query": "exit 127\n",
                "apt-get": "exit 127\n",
            }
        )
    else:
        commands.update(
            {
                "apt-get": APT_GET.replace("$ARCH", ""),
                "apt-cache": APT_CACHE,
                "dpkg": DPKG,
                "dpkg-query": DPKG_QUERY,
            }
        )
    for command, body in commands.items():
        instance.fake_command(command, body)
    checker = instance.write_file("/opt/CrowdStrike/falcon-kernel-check", "")
    checker.write_text("#!/usr/bin/env bash\n" + FALCON_KERNEL_CHECK)
    checker.chmod(0o755)
    instance.boot_hook = _boot
    return WindowServer(instance=instance, distro=spec.distro, hostname=name)


# --- What prep left: the change stored, QC and staging recorded, patchme.sh written --------------


LINUX_PATCHER_PATCHME = """#!/bin/bash
# Linux Patcher 4.2 - patch script for {change}
newkernel="{kernel}"
yum install -y "kernel-$newkernel" && grubby --set-default "/boot/vmlinuz-$newkernel" && reboot
"""


def stage_on(server: WindowServer, change: str, kernel: str, workdir: str = "/root") -> None:
    """Run prep's real stage_kernel.sh on the server (as the prep flow sends it); or write the
    Linux Patcher's own patchme.sh when the server's spec says so."""
    script = server.instance.root / "var/tmp/stage.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(stage_script(change, workdir, kernel))
    env = {
        **os.environ,
        "CLOUDOPS_ROOT": str(server.instance.root),
        "PATH": f"{server.instance.bin}:{os.environ['PATH']}",
    }
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    script.unlink()


def record_prep(
    store: Store, change: str, servers: Sequence[WindowServer], *, staged: bool = True
) -> None:
    """Store the change and record what a passed prep QC and a staging leave in the store."""
    store.save_change(ChangeSpec(change_number=change, targets=[s.target() for s in servers]))
    now = datetime.now(UTC)
    qc_run = store.start_run(f"prep-{change}", PREP_WORKFLOW, "initial_qc", "aws", change)
    results, parsed = [], {}
    for server in servers:
        facts = server.facts
        report = QcReport(
            hostname=server.hostname,
            kernel=server.running,
            distro=facts.distro,
            crowdstrike_running=True,
            available_kernels=list(facts.offered),
            repos_passed=True,
            disk_passed=True,
            passed=True,
            facts={"AGENT_FALCON_SENSOR": "running", "AGENT_BESCLIENT": "running"},
        )
        results.append(_ran(server, now))
        parsed[server.instance_id] = report.model_dump(mode="json")
    store.record_results(qc_run, results, parsed)
    store.finish_run(qc_run, "success", len(servers), 0)
    if not staged:
        return
    stage_run = store.start_run(f"prep-{change}", PREP_WORKFLOW, "stage_kernels", "aws", change)
    staged_parsed = {
        s.instance_id: StagedInstance(
            instance_id=s.instance_id,
            group=s.facts.group,
            kernel=s.facts.target,
            status=ResultStatus.SUCCESS,
            staged_kernel=s.facts.target,
        ).model_dump(mode="json")
        for s in servers
    }
    store.record_results(stage_run, [_ran(s, now) for s in servers], staged_parsed)
    store.finish_run(stage_run, "success", len(servers), 0)


def _ran(server: WindowServer, at: datetime) -> ScriptResult:
    return ScriptResult(
        instance_id=server.instance_id,
        account_id=server.instance.account_id,
        region=server.instance.region,
        status=ResultStatus.SUCCESS,
        exit_code=0,
        started_at=at,
        ended_at=at,
    )


def prep(
    store: Store, change: str, servers: Sequence[WindowServer], specs: dict[str, HostSpec]
) -> None:
    """What a prep run leaves: records in the store and patchme.sh on each server."""
    record_prep(store, change, servers)
    for server in servers:
        if specs[server.hostname].patchme_by_linux_patcher:
            server.write(
                f"/root/{change}/patchme.sh",
                LINUX_PATCHER_PATCHME.format(change=change, kernel=server.facts.target),
            )
        else:
            stage_on(server, change, server.facts.target)


PLACES = (
    ("111111111111", "us-east-1"),
    ("111111111111", "us-west-2"),
    ("222222222222", "us-east-1"),
    ("333333333333", "us-gov-west-1"),
)


def prepped_fleet(
    world: SsmWorld,
    change: str,
    specs: dict[str, HostSpec],
    places: Sequence[tuple[str, str]] = PLACES,
) -> dict[str, WindowServer]:
    """A server per name of ``specs`` dealt over ``places`` (by default two commercial accounts
    and GovCloud), prepped for ``change``."""
    servers = {
        name: build_server(world, *places[i % len(places)], name, spec)
        for i, (name, spec) in enumerate(specs.items())
    }
    prep(Store.default(), change, list(servers.values()), specs)
    return servers
