"""Patch window benchmark: ``linux-qc-patching-window`` on 2,000 emulated servers.

    python benchmarks/patch_window.py [--size 2000] [--install-seconds 20] [--reboot-seconds 40]

The fleet spreads over 4 accounts x 3 regions of the SSM agent emulator (moto underneath) in
its *simulate* mode: no bash; each script answers what the real one prints. The install runs
``--install-seconds`` and exits 194, the agent is away (ConnectionLost) for ``--reboot-seconds``
while the server reboots, then the install runs again and reports the new kernel and boot id;
the preflight and the post checks answer at once. The flow is the real one (tasks, store,
artifacts) on a temporary Prefect server, with the AWS provider's real poll schedule (2 s
growing to 15 s, with jitter) and the window's own ceiling on its installs (8 s,
``INSTALL_POLL_CEILING_SECONDS``); its canary takes one server of each of the three kernel
groups, then waves of 25%.

Printed per wave: wall time; the share of it spent waiting on the scripts and the reboot (the
simulated install + reboot); the overhead beyond them, and where it went (detect: from the last
install's end to the post checks' start, mostly polling granularity; post: the post checks;
record: after them); SSM calls by operation; Prefect task runs. Goals: overhead per wave at most
one poll interval (15 s) + 5 s; SSM calls for the whole window at most 1.5 per instance; task
runs that grow with chunks (50 instances), not with instances.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_SCRATCH = Path(tempfile.mkdtemp(prefix="patch-window-home-"))
os.environ["PREFECT_HOME"] = str(_SCRATCH / "prefect")
os.environ["CLOUDOPS_DATA_DIR"] = str(_SCRATCH / "data")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from moto import mock_aws  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.client.schemas.objects import TaskRun  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from blocks import AwsProviderBlock  # noqa: E402
from flows import linux_qc_patching_window  # noqa: E402
from flows.changes import ChangeSpec  # noqa: E402
from flows.linux_patching.post_check import SUMMARY_BEGIN, SUMMARY_END  # noqa: E402
from flows.linux_patching.prep_record import PREP_WORKFLOW, StagedInstance  # noqa: E402
from flows.linux_patching.qc_report import QcReport  # noqa: E402
from flows.linux_patching.window.install import BEGIN as INSTALL_BEGIN  # noqa: E402
from flows.linux_patching.window.install import END as INSTALL_END  # noqa: E402
from flows.linux_patching.window.patching import INSTALL_POLL_CEILING_SECONDS  # noqa: E402
from flows.linux_patching.window.preflight import BEGIN as PREFLIGHT_BEGIN  # noqa: E402
from flows.linux_patching.window.preflight import END as PREFLIGHT_END  # noqa: E402
from flows.linux_patching.window.result import WindowResult  # noqa: E402
from flows.store import Store  # noqa: E402
from providers.base import PollSchedule, ResultStatus, ScriptResult, Target  # noqa: E402
from tests.ssm_emulator import EmulatedInstance, SsmWorld  # noqa: E402

ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444")
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
CHANGE = "CHG0BENCH01"
# (distribution, running kernel, staged kernel): three kernel groups, so three canaries.
KERNELS = (
    ("RHEL8.10", "4.18.0-553.5.1.el8_10.x86_64", "4.18.0-553.45.1.el8_10"),
    ("AL2023", "6.1.79-99.167.amzn2023.x86_64", "6.1.102-108.177.amzn2023"),
    ("Ubuntu22.04", "5.15.0-101-generic", "5.15.0-105-generic"),
)


@dataclass
class Server:
    instance: EmulatedInstance
    distro: str
    before: str
    target: str


def _block(begin: str, end: str, values: dict[str, str]) -> str:
    return begin + "\n" + "".join(f"{k}={v}\n" for k, v in values.items()) + end + "\n"


def answers(
    servers: dict[str, Server], install_seconds: float
) -> Callable[[EmulatedInstance, str], tuple[str, str, int, float]]:
    """What each script prints on a server, and how long it runs (the simulate callback)."""

    def answer(instance: EmulatedInstance, script: str) -> tuple[str, str, int, float]:
        server = servers[instance.instance_id]
        booted = instance.boots > 0
        running = server.target + (
            ".x86_64" if ".el" in server.target or "amzn" in server.target else ""
        )
        if PREFLIGHT_BEGIN in script:
            facts = {
                "PREFLIGHT_VERSION": "1", "HOSTNAME": instance.instance_id,
                "KERNEL_RUNNING": server.before, "BOOT_ID": "boot-0", "PATCHME": "present",
                "PATCHME_KERNEL": server.target, "PKG_MANAGER": "dnf", "TARGET_INSTALLED": "no",
                "TARGET_OFFERED": "yes", "BOOT_FREE_KB": "512000", "BOOT_NEEDED_KB": "102400",
                "PKG_LOCK": "free", "FALCON_KERNEL_CHECK": "supported", "WINDOW_REBOOTS": "0",
            }  # fmt: skip
            return _block(PREFLIGHT_BEGIN, PREFLIGHT_END, facts), "", 0, 0.0
        if INSTALL_BEGIN in script:
            if not booted:
                return "installing\n", "", 194, install_seconds
            facts = {
                "INSTALL_VERSION": "1", "STATE": "booted_target", "TARGET": server.target,
                "KERNEL_BEFORE": server.before, "KERNEL_RUNNING": running,
                "BOOT_ID_BEFORE": "boot-0", "BOOT_ID": f"boot-{instance.boots}", "REBOOTS": "1",
            }  # fmt: skip
            return _block(INSTALL_BEGIN, INSTALL_END, facts), "", 0, 0.0
        if SUMMARY_BEGIN in script:
            facts = {
                "SUMMARY_VERSION": "1", "HOSTNAME": instance.instance_id,
                "KERNEL_RUNNING": running if booted else server.before,
                "KERNEL_TARGET": server.target, "KERNEL_TARGET_SOURCE": "patchme",
                "UPTIME_SECONDS": "60", "AGENT_FALCON_SENSOR": "running",
                "AGENT_BESCLIENT": "running", "AGENT_ENLINUXPC": "not_installed",
                "AGENT_SFTD": "not_installed", "LVM_CHECKED": "yes", "PKG_MANAGER": "dnf",
                "PKG_TRANSACTIONS_TODAY": "1",
            }  # fmt: skip
            return _block(SUMMARY_BEGIN, SUMMARY_END, facts), "", 0, 0.0
        return "", f"unexpected script on {instance.instance_id}", 1, 0.0

    return answer


def record_prep(servers: list[Server]) -> None:
    """What a prep run leaves in the store: the change, QC passed, the kernel staged."""
    store = Store.default()
    targets = [
        Target(
            instance_id=s.instance.instance_id,
            account_id=s.instance.account_id,
            region=s.instance.region,
        )
        for s in servers
    ]
    store.save_change(ChangeSpec(change_number=CHANGE, targets=targets))
    now = datetime.now(UTC)
    ran = [
        ScriptResult(
            instance_id=t.instance_id, account_id=t.account_id, region=t.region,
            status=ResultStatus.SUCCESS, exit_code=0, started_at=now, ended_at=now,
        )
        for t in targets
    ]  # fmt: skip
    qc = store.start_run("bench-prep", PREP_WORKFLOW, "initial_qc", "aws", CHANGE)
    store.record_results(
        qc,
        ran,
        {
            s.instance.instance_id: QcReport(
                hostname=s.instance.instance_id, kernel=s.before, distro=s.distro,
                crowdstrike_running=True, available_kernels=[s.target], passed=True,
            ).model_dump(mode="json")
            for s in servers
        },
    )  # fmt: skip
    store.finish_run(qc, "success", len(servers), 0)
    staged = store.start_run("bench-prep", PREP_WORKFLOW, "stage_kernels", "aws", CHANGE)
    store.record_results(
        staged,
        ran,
        {
            s.instance.instance_id: StagedInstance(
                instance_id=s.instance.instance_id, group=s.distro, kernel=s.target,
                status=ResultStatus.SUCCESS, staged_kernel=s.target,
            ).model_dump(mode="json")
            for s in servers
        },
    )  # fmt: skip
    store.finish_run(staged, "success", len(servers), 0)


@contextmanager
def emulated_fleet(size: int, install_seconds: float, reboot_seconds: float) -> Iterator[SsmWorld]:
    with tempfile.TemporaryDirectory(prefix="patch-window-") as scratch, mock_aws():
        world = SsmWorld(Path(scratch))
        world.install()
        try:
            for account in ACCOUNTS[1:]:
                world.add_role(account)
            home = world.credentials(ACCOUNTS[0])
            places = [(a, r) for a in ACCOUNTS for r in REGIONS]
            servers: dict[str, Server] = {}
            for n in range(size):
                instance = world.add_instance(*places[n % len(places)])
                distro, before, target = KERNELS[(n // len(places)) % len(KERNELS)]
                servers[instance.instance_id] = Server(instance, distro, before, target)
            record_prep(list(servers.values()))
            world.command_delay(pending=0.5)
            world.reboot_time(reboot_seconds)
            world.simulate(answers(servers, install_seconds))
            AwsProviderBlock(
                access_key_id=SecretStr(home.access_key_id),
                secret_access_key=SecretStr(home.secret_access_key),
                max_concurrent_groups=12,
            ).save("patch-window-benchmark", overwrite=True)
            yield world
        finally:
            world.close()


def phases(flow_run_id: object, wave: int) -> tuple[float, float, float]:
    """From the store: the delay between the last server's install ending and its post checks
    starting (polling granularity, judging), the post checks, and the recording after them."""
    store = Store.default()
    runs = {r.step: r for r in store.runs_for_change(CHANGE) if r.flow_run_id == str(flow_run_id)}
    install, post = runs[f"wave-{wave}"], runs[f"wave-{wave}-post"]
    ended = max(e.ended_at for e in store.executions(install.id) if e.ended_at)
    post_end = post.ended_at or post.started_at
    wave_end = install.ended_at or post_end
    return (
        (post.started_at - ended).total_seconds(),
        (post_end - post.started_at).total_seconds(),
        (wave_end - post_end).total_seconds(),
    )


def per_wave(world: SsmWorld, result: WindowResult, flow_run_id: object, scripts: float) -> None:
    task_runs: list[TaskRun] = []
    with get_client(sync_client=True) as client:
        while page := client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
            offset=len(task_runs),
        ):
            task_runs.extend(page)
    requests = world.requests
    print(
        f"{'wave':>5} {'kind':>6} {'n':>5} {'wall s':>7} {'scripts':>8} {'overhead s':>10} "
        f"{'(detect':>8} {'post':>5} {'record)':>8}  SSM calls by operation; task runs"
    )
    for wave in result.waves:
        if not (wave.started_at and wave.ended_at):
            continue
        start, end = wave.started_at.timestamp(), wave.ended_at.timestamp()
        wall = end - start
        calls = Counter(
            r.operation for r in requests if r.service == "ssm" and start <= r.at <= end
        )
        tasks = Counter(
            t.name.split("-")[0]
            for t in task_runs
            if t.start_time and start <= t.start_time.timestamp() <= end
        )
        detect, post, record = phases(flow_run_id, wave.number)
        print(
            f"{wave.number:>5} {wave.kind.value:>6} {len(wave.instance_ids):>5} {wall:>7.1f} "
            f"{scripts / wall:>7.0%} {wall - scripts:>10.1f} {detect:>8.1f} {post:>5.1f} "
            f"{record:>8.1f}  "
            + ", ".join(f"{op} {n}" for op, n in sorted(calls.items()))
            + f"; {sum(tasks.values())} ({', '.join(f'{k} {v}' for k, v in sorted(tasks.items()))})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--install-seconds", type=float, default=20.0)
    parser.add_argument("--reboot-seconds", type=float, default=40.0)
    args = parser.parse_args(argv)
    schedule = PollSchedule()
    with (
        prefect_test_harness(server_startup_timeout=180),
        emulated_fleet(args.size, args.install_seconds, args.reboot_seconds) as world,
    ):
        before = world.calls
        started = time.monotonic()
        state = linux_qc_patching_window(
            CHANGE,
            provider="aws-provider/patch-window-benchmark",
            wave_size="25%",
            max_failures="0",
            require_approval=False,
            return_state=True,
        )
        wall = time.monotonic() - started
        result: WindowResult = state.result()
        ssm = {op: n for (service, op), n in (world.calls - before).items() if service == "ssm"}
        print(
            f"\n== linux-qc-patching-window on {args.size} servers, "
            f"{len(ACCOUNTS)} accounts x {len(REGIONS)} regions =="
        )
        print(
            f"simulated install {args.install_seconds:.0f} s + reboot {args.reboot_seconds:.0f} s;"
            f" poll {schedule.initial_seconds:.0f} s growing to {schedule.max_seconds:.0f} s,"
            f" installs at most every {INSTALL_POLL_CEILING_SECONDS:.0f} s"
        )
        print(f"final statuses: {result.status_counts()}; whole run {wall:.0f} s")
        scripts = args.install_seconds + args.reboot_seconds
        per_wave(world, result, state.state_details.flow_run_id, scripts)
        total = sum(ssm.values())
        by_operation = ", ".join(f"{op} {n}" for op, n in sorted(ssm.items()))
        print(
            f"SSM calls, whole window: {total} ({total / args.size:.2f} per instance; goal "
            f"<= 1.5): {by_operation}"
        )
        print(
            f"reboots: {sum(world.reboots.values())} "
            f"({max(world.reboots.values(), default=0)} at most per server)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
