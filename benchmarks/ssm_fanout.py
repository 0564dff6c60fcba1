"""Fan-out benchmark: the AWS provider's SSM engine against the polling of the tool it replaces.

    python benchmarks/ssm_fanout.py [--sizes 50 500 2000] [--command-seconds 4]

For each size N it builds a fleet of N instances over 4 accounts x 3 regions on the SSM agent
emulator (moto underneath; the emulator's *simulate* mode stands in for bash, so every
invocation takes the simulated command time and prints a fixed output), then in one process:

- ``engine``: ``AwsProvider.execute_script_batch`` with the real poll schedule (2 s growing to
  15 s, with jitter): one ``ListCommandInvocations`` page sequence per command per poll round;
- ``engine-long``: the same with outputs longer than the 2,500 characters
  ``ListCommandInvocations`` carries, so each instance's output is fetched once;
- ``per-instance``: the old tool's pattern on the same commands and schedule, one
  ``GetCommandInvocation`` per unfinished instance per poll round.

It prints wall time, AWS API calls by operation (every HTTP attempt the emulator saw), calls
per instance, polling calls per instance per poll round, peak memory (tracemalloc's peak of
Python allocations while the run lasted, and the process's maximum RSS so far), and the ratio
of calls between the old pattern and the engine. Goals at N=2000: <= 0.05 polling calls per
instance per round; <= 0.3 calls per instance in all (<= 1.2 with long outputs); wall time
within two poll intervals of the command time; peak memory under 400 MB.

- ``run-script flow``: the same fan-out through the ``run-script`` Prefect flow on a temporary
  Prefect server, to count the task runs it creates (they grow with chunks, not instances).

A runner is anything with a ``name`` and ``run(bench) -> RunStats``; add one to ``RUNNERS`` and
it is measured the same way.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The flow runner's Prefect server, store and reports go to a scratch directory, and its
# temporary server's harmless SQLite lock tracebacks stay out of the figures.
_SCRATCH = Path(tempfile.mkdtemp(prefix="ssm-fanout-home-"))
os.environ["PREFECT_HOME"] = str(_SCRATCH / "prefect")
os.environ["CLOUDOPS_DATA_DIR"] = str(_SCRATCH / "data")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from moto import mock_aws  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from blocks import AwsProviderBlock  # noqa: E402
from flows import run_script  # noqa: E402
from providers.aws.clients import make_client  # noqa: E402
from providers.aws.config import AwsProviderConfig  # noqa: E402
from providers.aws.provider import AwsProvider  # noqa: E402
from providers.aws.settings import LegacyCredentials  # noqa: E402
from providers.base import (  # noqa: E402
    CommandProgress,
    CommandRef,
    PollSchedule,
    ScriptRequest,
    Target,
)
from tests.ssm_emulator import SsmWorld  # noqa: E402

ACCOUNTS = ("111111111111", "222222222222", "333333333333", "444444444444")
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
SCRIPT = "echo 'patch check ok'"
SHORT_OUTPUT = "patch check ok\n"
LONG_OUTPUT = "".join(f"line {n:05d} of a long package listing\n" for n in range(90))  # ~3,300
_STILL_RUNNING = {"Pending", "InProgress", "Delayed", "Cancelling"}


@dataclass
class Bench:
    """One emulated fleet and what a runner needs to run on it."""

    world: SsmWorld
    targets: list[Target]
    home_keys: tuple[str, str]
    command_seconds: float
    schedule: PollSchedule
    output: str = SHORT_OUTPUT
    trace_memory: bool = False

    def provider(self) -> AwsProvider:
        """A fresh provider (its own credential cache and clients), acting from the first
        account and reaching the others through OrganizationAccountAccessRole."""
        key_id, secret = self.home_keys
        config = AwsProviderConfig(
            access_key_id=SecretStr(key_id),
            secret_access_key=SecretStr(secret),
            poll=self.schedule,
            max_concurrent_groups=8,
        )
        return AwsProvider(config, legacy=LegacyCredentials(_env_file=None))

    def simulate(self, output: str) -> None:
        """Every invocation from now on ends in ``command_seconds`` printing ``output``."""
        self.output = output
        self.world.simulate(lambda instance, script: (output, "", 0))


@dataclass
class RunStats:
    """What one runner did on one fleet."""

    runner: str
    instances: int
    wall_seconds: float
    calls: Counter[tuple[str, str]]
    poll_rounds: int
    polling_calls: int
    tracemalloc_peak_mb: float | None
    max_rss_mb: float
    rss_before_mb: float
    statuses: Counter[str] = field(default_factory=Counter)
    outputs_ok: bool = True
    task_runs: Counter[str] | None = None

    @property
    def rss_growth_mb(self) -> float:
        return self.max_rss_mb - self.rss_before_mb

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def calls_per_instance(self) -> float:
        return self.total_calls / self.instances

    @property
    def polling_calls_per_instance_per_round(self) -> float:
        return self.polling_calls / self.instances / max(self.poll_rounds, 1)


class Runner(Protocol):
    name: str

    def run(self, bench: Bench) -> RunStats: ...


def _rss_mb(field_name: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS to the current RSS, so the peak read
    # after a run is that run's own (the emulator and moto are in the same process).
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@contextmanager
def measured(bench: Bench) -> Iterator[dict[str, Any]]:
    """Wall time, the calls the emulator saw, and memory, around a run. tracemalloc slows
    every allocation down, so it runs only when asked (``--tracemalloc``)."""
    before = bench.world.calls
    _reset_peak_rss()
    box: dict[str, Any] = {"rss_before_mb": _rss_mb("VmRSS")}
    if bench.trace_memory:
        tracemalloc.start()
    started = time.monotonic()
    try:
        yield box
    finally:
        box["wall"] = time.monotonic() - started
        box["peak_mb"] = None
        if bench.trace_memory:
            box["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        box["rss_mb"] = _rss_mb("VmHWM")
        box["calls"] = bench.world.calls - before


class EngineRunner:
    """``execute_script_batch``, counting poll rounds (observed, not changed)."""

    def __init__(self, name: str, output: str):
        self.name = name
        self.output = output

    def run(self, bench: Bench) -> RunStats:
        bench.simulate(self.output)
        provider = bench.provider()
        rounds: Counter[str] = Counter()
        lock = threading.Lock()
        poll = provider.poll

        def counted(ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
            with lock:
                rounds[ref.command_id] += 1
            return poll(ref, finished)

        provider.poll = counted  # type: ignore[method-assign]
        with measured(bench) as box:
            batch = provider.execute_script_batch(bench.targets, SCRIPT, timeout=60)
        calls = box["calls"]
        polling = calls[("ssm", "ListCommandInvocations")] + calls[("ssm", "GetCommandInvocation")]
        return RunStats(
            runner=self.name,
            instances=len(bench.targets),
            wall_seconds=box["wall"],
            calls=calls,
            poll_rounds=max(rounds.values(), default=0),
            polling_calls=polling,
            tracemalloc_peak_mb=box["peak_mb"],
            max_rss_mb=box["rss_mb"],
            rss_before_mb=box["rss_before_mb"],
            statuses=Counter(r.status.value for r in batch.results),
            outputs_ok=all(r.stdout == self.output for r in batch.results),
        )


class PerInstancePollingRunner:
    """The replaced tool's polling: the same pre-check and sends, then one
    ``GetCommandInvocation`` per unfinished instance per poll round, same schedule."""

    name = "per-instance"

    def run(self, bench: Bench) -> RunStats:
        bench.simulate(SHORT_OUTPUT)
        provider = bench.provider()
        request = ScriptRequest(script=SCRIPT, timeout_seconds=60)
        rounds = 0
        outputs: dict[str, str] = {}
        with measured(bench) as box:
            # Launched like the engine (groups at once), so that both poll the same rounds.
            groups: dict[tuple[str, str], list[Target]] = {}
            for target in bench.targets:
                groups.setdefault((target.account_id, target.region), []).append(target)

            def launch(group: list[Target]) -> list[CommandRef]:
                plan = provider.prepare(group, request)
                return [provider.send(chunk, request) for chunk in plan.chunks]

            with ThreadPoolExecutor(max_workers=8) as pool:
                refs = [ref for part in pool.map(launch, groups.values()) for ref in part]
            clients = {
                (ref.account_id, ref.region): make_client(
                    provider.resolver.credentials_for(ref.region, ref.account_id).boto3_session(
                        ref.region
                    ),
                    "ssm",
                    ref.region,
                    provider.config,
                )
                for ref in refs
            }
            pending = [(ref, i) for ref in refs for i in ref.instance_ids]
            delays = iter(bench.schedule.delays(random.random))
            while pending:
                time.sleep(next(delays))
                rounds += 1
                still = []
                for ref, instance_id in pending:
                    ssm = clients[(ref.account_id, ref.region)]
                    status = _invocation_status(ssm, ref.command_id, instance_id, outputs)
                    if status in _STILL_RUNNING:
                        still.append((ref, instance_id))
                pending = still
        calls = box["calls"]
        return RunStats(
            runner=self.name,
            instances=len(bench.targets),
            wall_seconds=box["wall"],
            calls=calls,
            poll_rounds=rounds,
            polling_calls=calls[("ssm", "GetCommandInvocation")],
            tracemalloc_peak_mb=box["peak_mb"],
            max_rss_mb=box["rss_mb"],
            rss_before_mb=box["rss_before_mb"],
            statuses=Counter("success" for _ in outputs),
            outputs_ok=len(outputs) == len(bench.targets)
            and all(o == SHORT_OUTPUT for o in outputs.values()),
        )


def _invocation_status(ssm: Any, command_id: str, instance_id: str, outputs: dict) -> str:
    try:
        reply = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ssm.exceptions.InvocationDoesNotExist:
        return "Pending"
    if reply["Status"] not in _STILL_RUNNING:
        outputs[instance_id] = reply.get("StandardOutputContent", "")
    return reply["Status"]


class RunScriptFlowRunner:
    """The ``run-script`` flow (prepare, send and collect tasks) on the same fleet."""

    name = "run-script flow"

    def run(self, bench: Bench) -> RunStats:
        bench.simulate(SHORT_OUTPUT)
        key_id, secret = bench.home_keys
        AwsProviderBlock(
            access_key_id=SecretStr(key_id),
            secret_access_key=SecretStr(secret),
            poll_initial_seconds=bench.schedule.initial_seconds,
            poll_max_seconds=bench.schedule.max_seconds,
            max_concurrent_groups=8,
        ).save("ssm-fanout-benchmark", overwrite=True)
        with measured(bench) as box:
            state = run_script(
                script=SCRIPT,
                targets=bench.targets,
                provider="aws-provider/ssm-fanout-benchmark",
                timeout_seconds=60,
                return_state=True,
            )
        batch = state.result().batch
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
        calls = box["calls"]
        polls = calls[("ssm", "ListCommandInvocations")]
        return RunStats(
            runner=self.name,
            instances=len(bench.targets),
            wall_seconds=box["wall"],
            calls=calls,
            # Each command's page sequence is one page here (50 instances at most a chunk).
            poll_rounds=polls // max(calls[("ssm", "SendCommand")], 1),
            polling_calls=polls + calls[("ssm", "GetCommandInvocation")],
            tracemalloc_peak_mb=box["peak_mb"],
            max_rss_mb=box["rss_mb"],
            rss_before_mb=box["rss_before_mb"],
            statuses=Counter(r.status.value for r in batch.results),
            outputs_ok=all(r.stdout == SHORT_OUTPUT for r in batch.results),
            task_runs=Counter(run.name.split("-")[0] for run in runs),
        )


RUNNERS: list[Runner] = [
    EngineRunner("engine", SHORT_OUTPUT),
    EngineRunner("engine-long", LONG_OUTPUT),
    PerInstancePollingRunner(),
    RunScriptFlowRunner(),
]


@contextmanager
def emulated_fleet(size: int, command_seconds: float, schedule: PollSchedule) -> Iterator[Bench]:
    """``size`` instances spread over 4 accounts x 3 regions, roles in the other accounts."""
    with tempfile.TemporaryDirectory(prefix="ssm-fanout-") as scratch, mock_aws():
        world = SsmWorld(Path(scratch))
        world.install()
        try:
            for account in ACCOUNTS[1:]:
                world.add_role(account)
            home = world.credentials(ACCOUNTS[0])
            places = [(a, r) for a in ACCOUNTS for r in REGIONS]
            instances = [
                world.add_instance(*places[n % len(places)], platform="linux") for n in range(size)
            ]
            # The agent takes a moment to pick a command up, then the script runs.
            world.command_delay(pending=0.5, in_progress_min=max(command_seconds - 0.5, 0.0))
            targets = [
                Target(instance_id=i.instance_id, account_id=i.account_id, region=i.region)
                for i in instances
            ]
            yield Bench(
                world,
                targets,
                (home.access_key_id, home.secret_access_key),
                command_seconds,
                schedule,
            )
        finally:
            world.close()


def report(stats: list[RunStats], command_seconds: float, schedule: PollSchedule) -> None:
    by_name = {s.runner: s for s in stats}
    n = stats[0].instances
    print(
        f"\n=== N = {n} instances, 4 accounts x 3 regions, command time {command_seconds:.1f} s"
        " (emulator simulate mode: no bash processes) ==="
    )
    for s in stats:
        ops = ", ".join(f"{op} {count}" for (_, op), count in sorted(s.calls.items()))
        print(
            f"[{s.runner}] wall {s.wall_seconds:.2f} s | poll rounds {s.poll_rounds} | "
            f"calls {s.total_calls} ({s.calls_per_instance:.3f}/instance) | polling calls "
            f"{s.polling_calls} ({s.polling_calls_per_instance_per_round:.4f}/instance/round)"
        )
        print(f"    by operation: {ops}")
        if s.task_runs is not None:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(s.task_runs.items()))
            print(f"    Prefect task runs: {sum(s.task_runs.values())} ({kinds})")
        traced = (
            f"tracemalloc peak {s.tracemalloc_peak_mb:.1f} MB, "
            if s.tracemalloc_peak_mb is not None
            else ""
        )
        print(
            f"    memory: {traced}peak RSS during the run {s.max_rss_mb:.1f} MB, of which "
            f"{s.rss_growth_mb:.1f} MB added by the run (the rest is the emulated world and "
            f"moto) | results {dict(s.statuses)} | outputs "
            f"{'as printed' if s.outputs_ok else 'WRONG'}"
        )
    engine, old = by_name.get("engine"), by_name.get("per-instance")
    if engine and old:
        print(
            f"    per-instance polling / engine: {old.total_calls / engine.total_calls:.1f}x "
            f"calls in all, {old.polling_calls / max(engine.polling_calls, 1):.1f}x polling "
            "calls"
        )
    if engine and n >= 2000:
        first_delays = [schedule.initial_seconds * schedule.factor**k for k in range(8)]
        elapsed, slack = 0.0, 0.0
        for delay in first_delays:
            elapsed += delay
            if elapsed >= command_seconds:
                slack = 2 * min(delay, schedule.max_seconds)
                break
        long = by_name.get("engine-long")
        checks = [
            (
                "polling calls/instance/round <= 0.05",
                engine.polling_calls_per_instance_per_round <= 0.05,
            ),
            ("calls/instance <= 0.3 (short outputs)", engine.calls_per_instance <= 0.3),
            (
                "calls/instance <= 1.2 (long outputs)",
                long is not None and long.calls_per_instance <= 1.2,
            ),
            (
                f"wall <= command time + two poll intervals ({command_seconds + slack:.1f} s)",
                engine.wall_seconds <= command_seconds + slack,
            ),
            (
                "memory added by a run < 400 MB",
                max(s.rss_growth_mb for s in stats) < 400,
            ),
            (
                "whole process (world included) < 400 MB",
                max(s.max_rss_mb for s in stats) < 400,
            ),
        ]
        for label, ok in checks:
            print(f"    goal {label}: {'met' if ok else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 2000])
    parser.add_argument("--command-seconds", type=float, default=4.0)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (slower)"
    )
    args = parser.parse_args(argv)
    schedule = PollSchedule()  # the real one: 2 s growing to 15 s, 20% jitter
    with prefect_test_harness(server_startup_timeout=120):
        for size in args.sizes:
            with emulated_fleet(size, args.command_seconds, schedule) as bench:
                bench.trace_memory = args.tracemalloc
                stats = [runner.run(bench) for runner in RUNNERS]
            report(stats, args.command_seconds, schedule)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
