"""The engine (``providers.engine``) on an in-memory provider: grouping, one result per target
whatever step fails, the retry rule, and a send repeated only when nothing can have gone out.

The provider here is a fake of the cloud only; the engine, ``DirectSteps`` and
``Provider.collect`` are the real ones.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

import pytest

from providers.base import (
    Account,
    BatchStatus,
    Chunk,
    CommandProgress,
    CommandRef,
    CredentialReport,
    CredentialSource,
    DiscoveryFilter,
    Instance,
    Plan,
    PollSchedule,
    Provider,
    ProviderError,
    ResultStatus,
    ScriptRequest,
    ScriptResult,
    Target,
    is_safe_to_resend,
    is_transient,
)
from providers.engine import (
    DirectSteps,
    TargetGroup,
    call_with_retries,
    group_targets,
    run_batch,
)
from providers.partitions import Environment

REQUEST = ScriptRequest(script="echo hi")


def throttled() -> ProviderError:
    return ProviderError("throttled", transient=True, safe_to_repeat=True, code="Throttling")


def connection_reset() -> ProviderError:
    return ProviderError("connection reset by peer", transient=True)


def access_denied() -> ProviderError:
    return ProviderError("access denied", code="AccessDenied")


class FakeCloud(Provider):
    """Sends chunks of two; a sent script succeeds at once and prints its instance id.

    ``fail`` queues exceptions per step and key (``prepare``: the group's region; ``send``,
    ``find`` and ``poll``: the chunk's first instance id): each call raises the next one, then
    succeeds. ``lose`` queues exceptions raised by a send *after* its command was created: the
    answer is lost, the command is out.
    """

    name = "fake"

    def __init__(self) -> None:
        self.fail: dict[tuple[str, str], list[BaseException]] = {}
        self.lose: dict[str, list[BaseException]] = {}
        self.commands: list[tuple[str, CommandRef]] = []  # (chunk key, command) as created
        self.calls: Counter[tuple[str, str]] = Counter()
        self.sent: Counter[str] = Counter()
        self.prepare_seconds = 0.0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def poll_schedule(self) -> PollSchedule:
        return PollSchedule(initial_seconds=0.001, max_seconds=0.001, jitter=0.0)

    def validate_credentials(self, environment: Environment | None = None) -> CredentialReport:
        return CredentialReport(
            account_id="000000000000", arn="fake", partition="fake", source=CredentialSource.LOCAL
        )

    def discover_instances(self, filters: DiscoveryFilter) -> list[Instance]:
        return []

    def enumerate_accounts(self) -> list[Account]:
        return []

    def enumerate_regions(self) -> list[str]:
        return []

    def _step(self, step: str, key: str) -> None:
        with self._lock:
            self.calls[(step, key)] += 1
            queued = self.fail.get((step, key))
            if queued:
                raise queued.pop(0)

    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan:
        self._step("prepare", targets[0].region)
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.prepare_seconds)
            plan = Plan()
            ready = []
            for target in targets:
                if target.instance_id.startswith("off"):
                    plan.results.append(
                        ScriptResult.without_running(target, ResultStatus.OFFLINE, "agent offline")
                    )
                else:
                    ready.append(target)
            for start in range(0, len(ready), 2):
                part = ready[start : start + 2]
                plan.chunks.append(
                    Chunk(
                        key=f"chunk-{part[0].instance_id}",
                        account_id=part[0].account_id,
                        region=part[0].region,
                        targets=part,
                    )
                )
            return plan
        finally:
            with self._lock:
                self.running -= 1

    def send(self, chunk: Chunk, request: ScriptRequest) -> CommandRef:
        self._step("send", chunk.instance_ids[0])
        now = datetime.now(UTC)
        ref = CommandRef(
            command_id=f"cmd-{next(self._ids)}",
            chunk_key=chunk.key,
            account_id=chunk.account_id,
            region=chunk.region,
            instance_ids=chunk.instance_ids,
            sent_at=now,
            deadline=now + timedelta(minutes=5),
        )
        with self._lock:
            self.sent.update(chunk.instance_ids)
            self.commands.append((chunk.key, ref))
            lost = self.lose.get(chunk.instance_ids[0])
            if lost:
                raise lost.pop(0)
        return ref

    def find_sent(self, chunk: Chunk, request: ScriptRequest, since: datetime) -> CommandRef | None:
        self._step("find", chunk.instance_ids[0])
        with self._lock:
            found = [r for key, r in self.commands if key == chunk.key and r.sent_at >= since]
        return found[0] if found else None

    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        self._step("poll", ref.instance_ids[0])
        results = [
            ScriptResult(
                instance_id=i,
                account_id=ref.account_id,
                region=ref.region,
                status=ResultStatus.SUCCESS,
                exit_code=0,
                stdout=i,
                command_id=ref.command_id,
            )
            for i in ref.instance_ids
            if i not in finished
        ]
        return CommandProgress(ref=ref, results=results)

    def expire(self, ref: CommandRef, pending: Sequence[str]) -> list[ScriptResult]:
        raise AssertionError("nothing outlives its deadline here")


V = TypeVar("V")


class Done(Generic[V]):
    """A step already run: its value, or its exception raised again by ``result()``."""

    def __init__(self, step: Callable[[], V]) -> None:
        self._error: Exception | None = None
        try:
            self._value = step()
        except Exception as exc:
            self._error = exc

    def result(self) -> V:
        if self._error is not None:
            raise self._error
        return self._value


def fleet(layout: dict[tuple[str, str], list[str]]) -> list[Target]:
    """Targets from ``{(account, region): [instance ids]}``."""
    return [
        Target(instance_id=i, account_id=account, region=region)
        for (account, region), ids in layout.items()
        for i in ids
    ]


class Run:
    """One ``run_batch`` through ``DirectSteps`` on a ``FakeCloud``, with what it reported."""

    def __init__(
        self,
        cloud: FakeCloud,
        targets: list[Target],
        *,
        workers: int = 4,
        request: ScriptRequest = REQUEST,
    ) -> None:
        self.slept: list[float] = []
        self.problems: list[str] = []
        self.reported: list[ScriptResult] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            steps = DirectSteps(cloud, pool, sleep=self.slept.append)
            self.batch = run_batch(
                steps,
                targets,
                request,
                on_results=self.reported.extend,
                on_problem=self.problems.append,
            )
        self.by_id = {r.instance_id: r for r in self.batch.results}


A, B = "111111111111", "222222222222"
LAYOUT = {
    (A, "us-east-1"): ["i-a1", "i-a2", "i-a3", "off-a4"],
    (A, "eu-west-1"): ["i-e1", "i-e2"],
    (B, "us-east-1"): ["i-b1"],
}


# -- grouping ----------------------------------------------------------------------------------


def test_groups_keep_the_given_order_and_each_instance_once() -> None:
    targets = fleet({(A, "us-east-1"): ["i-2", "i-1"], (B, "us-west-2"): ["i-3"]})
    again = [targets[1], targets[0].model_copy(update={"name": "same instance, named"})]

    groups = group_targets([*targets, *again])

    assert [(g.name, [t.instance_id for t in g.targets]) for g in groups] == [
        (f"{A}-us-east-1", ["i-2", "i-1"]),
        (f"{B}-us-west-2", ["i-3"]),
    ]


def test_a_group_name_says_which_part_is_missing() -> None:
    assert TargetGroup("", "", ()).name == "no-account-no-region"
    assert TargetGroup(A, "", ()).name == f"{A}-no-region"
    assert TargetGroup("", "us-east-1", ()).name == "no-account-us-east-1"


# -- one result per target, whatever fails -----------------------------------------------------


def test_a_clean_run_gives_each_target_one_result_and_reports_them_all() -> None:
    cloud = FakeCloud()
    targets = fleet(LAYOUT)

    run = Run(cloud, [*targets, targets[0]])

    assert sorted(run.by_id) == sorted(t.instance_id for t in targets)
    assert len(run.batch.results) == len(targets)
    assert run.by_id["off-a4"].status is ResultStatus.OFFLINE
    assert run.batch.status is BatchStatus.PARTIAL and run.batch.success_count == 6
    assert sorted(r.instance_id for r in run.reported) == sorted(run.by_id)
    assert run.problems == []
    assert set(cloud.sent.values()) == {1}


def test_a_failed_prepare_errors_only_its_group() -> None:
    cloud = FakeCloud()
    cloud.fail[("prepare", "eu-west-1")] = [access_denied()]

    run = Run(cloud, fleet(LAYOUT))

    assert len(run.batch.results) == 7
    for instance_id in ("i-e1", "i-e2"):
        result = run.by_id[instance_id]
        assert result.status is ResultStatus.ERROR
        assert result.error == (
            f"not run: the targets in account {A} region eu-west-1 could not be prepared: "
            "access denied"
        )
    assert run.by_id["i-a1"].status is ResultStatus.SUCCESS
    assert run.by_id["i-b1"].status is ResultStatus.SUCCESS
    assert run.problems == [f"prepare {A}-eu-west-1 failed for 2 target(s): access denied"]
    assert cloud.calls[("prepare", "eu-west-1")] == 1  # permanent: not tried again


def test_a_failed_send_errors_only_its_chunk() -> None:
    cloud = FakeCloud()
    cloud.fail[("send", "i-a3")] = [access_denied()]  # the second chunk of A/us-east-1

    run = Run(cloud, fleet(LAYOUT))

    assert len(run.batch.results) == 7
    assert run.by_id["i-a3"].status is ResultStatus.ERROR
    assert run.by_id["i-a3"].error == (
        f"sending to account {A} region us-east-1 failed: access denied"
    )
    assert run.by_id["i-a1"].status is run.by_id["i-a2"].status is ResultStatus.SUCCESS
    assert run.by_id["off-a4"].status is ResultStatus.OFFLINE
    assert len(run.problems) == 1 and "chunk-i-a3" in run.problems[0]
    assert "i-a3" not in cloud.sent


def test_a_failed_collect_errors_only_its_command_and_names_it() -> None:
    cloud = FakeCloud()
    cloud.fail[("poll", "i-e1")] = [access_denied()]

    run = Run(cloud, fleet(LAYOUT))

    assert len(run.batch.results) == 7
    for instance_id in ("i-e1", "i-e2"):
        result = run.by_id[instance_id]
        assert result.status is ResultStatus.ERROR and result.command_id
        assert result.error == (
            f"sent in account {A} region eu-west-1 as command {result.command_id}, but its "
            "results could not be read: access denied"
        )
    assert run.batch.success_count == 4
    assert len(run.problems) == 1 and "collect of command" in run.problems[0]


class HalfRead(FakeCloud):
    """A command's first instance is final at the first look; every later look is refused."""

    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        if finished:
            raise access_denied()
        first = super().poll(ref, finished).results[0]
        return CommandProgress(ref=ref, results=[first], pending=ref.instance_ids[1:])


def test_a_collect_refused_half_way_keeps_the_results_already_final() -> None:
    run = Run(HalfRead(), fleet({(A, "us-east-1"): ["i-1", "i-2"]}))

    assert run.by_id["i-1"].status is ResultStatus.SUCCESS and run.by_id["i-1"].stdout == "i-1"
    lost = run.by_id["i-2"]
    assert lost.status is ResultStatus.ERROR and lost.command_id
    assert (lost.error or "").endswith("but its results could not be read: access denied")
    assert len(run.problems) == 1 and "collect of command" in run.problems[0]


class Careless(FakeCloud):
    """Leaves the last target of a group out of its plan, and reports the first one as
    offline while sending it all the same."""

    def prepare(self, targets: Sequence[Target], request: ScriptRequest) -> Plan:
        plan = super().prepare(targets[:-1], request)
        plan.results.append(ScriptResult.without_running(targets[0], ResultStatus.OFFLINE, "?"))
        return plan


def test_a_target_left_out_gets_one_result_and_a_second_result_is_dropped() -> None:
    cloud = Careless()

    run = Run(cloud, fleet({(A, "us-east-1"): ["i-1", "i-2", "i-3"]}))

    assert [(r.instance_id, r.status) for r in run.batch.results] == [
        ("i-1", ResultStatus.OFFLINE),
        ("i-2", ResultStatus.SUCCESS),
        ("i-3", ResultStatus.ERROR),
    ]
    assert "no result came back" in (run.by_id["i-3"].error or "")
    assert run.problems == [
        "a second result for i-1 was left out",
        "1 target(s) got no result from any step",
    ]
    assert sorted(r.instance_id for r in run.reported) == ["i-1", "i-2", "i-3"]


def test_a_runner_of_other_futures_drives_the_same_engine() -> None:
    class InlineSteps:
        """Each step run at once in the caller's thread, as a finished future."""

        def __init__(self, provider: Provider) -> None:
            self.provider = provider

        def prepare(self, group: TargetGroup, request: ScriptRequest) -> Done[Plan]:
            return Done(lambda: self.provider.prepare(list(group.targets), request))

        def send(self, chunk: Chunk, request: ScriptRequest) -> Done[CommandRef]:
            return Done(lambda: self.provider.send(chunk, request))

        def collect(self, ref: CommandRef, request: ScriptRequest) -> Done[list[ScriptResult]]:
            return Done(lambda: self.provider.collect(ref, sleep=lambda _: None))

    cloud = FakeCloud()
    cloud.fail[("send", "i-b1")] = [connection_reset()]

    batch = run_batch(InlineSteps(cloud), fleet(LAYOUT), REQUEST)

    by_id = {r.instance_id: r for r in batch.results}
    assert len(batch.results) == 7 and by_id["i-b1"].status is ResultStatus.ERROR
    assert "may have gone out" in (by_id["i-b1"].error or "")


# -- the retry rule ----------------------------------------------------------------------------


def test_call_with_retries_retries_transient_faults_until_one_succeeds() -> None:
    faults = [throttled(), connection_reset()]
    slept: list[float] = []

    def step() -> str:
        if faults:
            raise faults.pop(0)
        return "done"

    value = call_with_retries(step, attempts=3, delays=iter([1.0, 2.0]), sleep=slept.append)

    assert value == "done" and slept == [1.0, 2.0]


def test_call_with_retries_stops_at_attempts_with_the_last_fault() -> None:
    calls: list[int] = []

    def step() -> str:
        calls.append(1)
        raise ProviderError(f"throttled {len(calls)}", transient=True)

    with pytest.raises(ProviderError, match="throttled 3"):
        call_with_retries(step, attempts=3, delays=itertools.repeat(0.5), sleep=lambda _: None)
    assert len(calls) == 3


def test_call_with_retries_raises_a_permanent_fault_at_once() -> None:
    calls: list[int] = []

    def step() -> str:
        calls.append(1)
        raise access_denied()

    with pytest.raises(ProviderError, match="access denied"):
        call_with_retries(step, attempts=5, delays=itertools.repeat(0.5), sleep=lambda _: None)
    assert len(calls) == 1


def test_only_a_provider_error_that_says_so_is_transient() -> None:
    assert is_transient(throttled()) and is_transient(connection_reset())
    assert not is_transient(access_denied())
    assert not is_transient(TimeoutError("a bare exception no provider classified"))
    assert is_safe_to_resend(throttled())
    assert not is_safe_to_resend(connection_reset())
    assert not is_safe_to_resend(ProviderError("refused", safe_to_repeat=True))


def test_a_throttled_send_is_sent_again_and_runs_once() -> None:
    cloud = FakeCloud()
    cloud.fail[("send", "i-b1")] = [throttled(), throttled()]

    run = Run(cloud, fleet(LAYOUT))

    assert run.by_id["i-b1"].status is ResultStatus.SUCCESS
    assert cloud.calls[("send", "i-b1")] == 3
    assert cloud.sent["i-b1"] == 1
    assert run.problems == []
    assert len(run.slept) >= 2  # waited between the attempts


def test_a_send_refused_by_a_connection_fault_is_looked_up_then_sent_once() -> None:
    cloud = FakeCloud()
    cloud.fail[("send", "i-b1")] = [connection_reset()]  # the request never arrived

    run = Run(cloud, fleet(LAYOUT))

    assert run.by_id["i-b1"].status is ResultStatus.SUCCESS
    assert cloud.calls[("send", "i-b1")] == 2 and cloud.calls[("find", "i-b1")] == 1
    assert cloud.sent["i-b1"] == 1
    assert run.problems == []


def test_a_send_whose_answer_was_lost_is_found_and_not_sent_again() -> None:
    cloud = FakeCloud()
    cloud.lose["i-b1"] = [connection_reset()]  # the command went out, its answer did not

    run = Run(cloud, fleet(LAYOUT))

    assert run.by_id["i-b1"].status is ResultStatus.SUCCESS
    assert cloud.calls[("send", "i-b1")] == 1 and cloud.calls[("find", "i-b1")] == 1
    assert cloud.sent["i-b1"] == 1
    [(_, command)] = [(k, r) for k, r in cloud.commands if "i-b1" in r.instance_ids]
    assert run.by_id["i-b1"].command_id == command.command_id


def test_a_send_that_cannot_be_looked_up_is_neither_sent_again_nor_followed() -> None:
    cloud = FakeCloud()
    cloud.lose["i-b1"] = [connection_reset()]
    cloud.fail[("find", "i-b1")] = [access_denied()]

    run = Run(cloud, fleet(LAYOUT))

    result = run.by_id["i-b1"]
    assert result.status is ResultStatus.ERROR
    assert "looking it up failed: access denied" in (result.error or "")
    assert "may have gone out" in (result.error or "")
    assert cloud.sent["i-b1"] == 1
    assert run.batch.success_count == 5


def test_prepare_and_collect_are_retried_on_transient_faults() -> None:
    cloud = FakeCloud()
    cloud.fail[("prepare", "eu-west-1")] = [connection_reset(), throttled()]
    cloud.fail[("poll", "i-a1")] = [connection_reset()]

    run = Run(cloud, fleet(LAYOUT))

    assert run.batch.success_count == 6 and run.problems == []
    assert cloud.calls[("prepare", "eu-west-1")] == 3
    assert cloud.calls[("poll", "i-a1")] == 2


def test_transient_faults_past_the_attempts_become_error_results() -> None:
    cloud = FakeCloud()
    cloud.fail[("prepare", "eu-west-1")] = [throttled() for _ in range(3)]

    run = Run(cloud, fleet(LAYOUT))

    assert cloud.calls[("prepare", "eu-west-1")] == 3
    assert run.by_id["i-e1"].status is ResultStatus.ERROR
    assert "throttled" in (run.by_id["i-e1"].error or "")


# -- the plain-Python entry points -------------------------------------------------------------


class SlowCommands(FakeCloud):
    """Every command is final at its third look; the waits between looks are recorded per
    command, on a schedule with a lot of jitter."""

    def __init__(self, jitter: float = 1.0) -> None:
        super().__init__()
        self.looks: Counter[str] = Counter()
        self.waits: dict[str, list[float]] = {}
        self.jitter = jitter

    def poll_schedule(self) -> PollSchedule:
        return PollSchedule(initial_seconds=0.05, max_seconds=0.2, factor=2.0, jitter=self.jitter)

    def poll(self, ref: CommandRef, finished: Collection[str] = ()) -> CommandProgress:
        with self._lock:
            self.looks[ref.command_id] += 1
            if self.looks[ref.command_id] < 3:
                return CommandProgress(ref=ref, pending=list(ref.instance_ids))
        return super().poll(ref, finished)

    def collect(
        self,
        ref: CommandRef,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] | None = None,
        on_progress: Callable[[CommandProgress], None] | None = None,
        before_poll: Callable[[], None] | None = None,
        poll_ceiling: float | None = None,
    ) -> list[ScriptResult]:
        waits = self.waits.setdefault(ref.command_id, [])
        return super().collect(
            ref, sleep=waits.append, rng=rng, on_progress=on_progress, poll_ceiling=poll_ceiling
        )


def test_the_commands_of_a_run_poll_on_one_schedule() -> None:
    # A run ends with its slowest command: were the jitter drawn per command, one of many
    # would nearly always look just too early and wait a whole interval more.
    cloud = SlowCommands()

    run = Run(cloud, fleet(LAYOUT))
    other = SlowCommands()
    Run(other, fleet(LAYOUT))

    assert run.batch.success_count == 6 and set(cloud.looks.values()) == {3}
    # The waits between looks (the first wait counts from each command's own send).
    between = {tuple(waits[-2:]) for waits in cloud.waits.values()}
    assert len(cloud.waits) == 4 and len(between) == 1
    assert between != {tuple(waits[-2:]) for waits in other.waits.values()}  # another run


def test_a_request_s_poll_ceiling_caps_the_waits_of_its_commands() -> None:
    # Without jitter the waits are the schedule itself: 0.05 s doubling up to 0.2 s.
    steady, capped = SlowCommands(jitter=0.0), SlowCommands(jitter=0.0)

    Run(steady, fleet(LAYOUT))
    run = Run(
        capped, fleet(LAYOUT), request=REQUEST.model_copy(update={"poll_ceiling_seconds": 0.08})
    )

    assert run.batch.success_count == 6 and set(capped.looks.values()) == {3}
    assert {tuple(w[-2:]) for w in steady.waits.values()} == {(0.1, 0.2)}
    assert {tuple(w[-2:]) for w in capped.waits.values()} == {(0.08, 0.08)}


def test_a_poll_ceiling_only_ever_shortens_a_schedule() -> None:
    schedule = PollSchedule(initial_seconds=2, max_seconds=15, factor=1.5, jitter=0)

    def first(s: PollSchedule, n: int) -> list[float]:
        return list(itertools.islice(s.delays(lambda: 0.5), n))

    assert schedule.capped(None) is schedule and schedule.capped(30) is schedule
    assert first(schedule.capped(8), 6) == [2, 3, 4.5, 6.75, 8, 8]
    assert first(schedule.capped(1), 3) == [1, 1, 1]  # below the first wait too
    assert schedule.capped(8).grace_seconds == schedule.grace_seconds
    with pytest.raises(ValueError, match="greater than 0"):
        ScriptRequest(script="true", poll_ceiling_seconds=0)


def test_run_request_runs_at_most_max_workers_steps_at_once() -> None:
    layout = {(A, f"us-east-{n}"): [f"i-{n}"] for n in range(1, 3)}
    layout.update({(B, f"us-west-{n}"): [f"i-w{n}"] for n in range(1, 3)})

    one_at_a_time, default = FakeCloud(), FakeCloud()
    one_at_a_time.prepare_seconds = default.prepare_seconds = 0.1

    batch = one_at_a_time.run_request(fleet(layout), REQUEST, max_workers=1)
    default.run_request(fleet(layout), REQUEST)

    assert batch.status is BatchStatus.SUCCESS and len(batch.results) == 4
    assert one_at_a_time.most_at_once == 1
    assert default.max_concurrent_groups == 8 and default.most_at_once > 1


def test_execute_script_batch_goes_through_the_engine() -> None:
    cloud = FakeCloud()
    cloud.fail[("send", "i-e1")] = [access_denied()]

    batch = cloud.execute_script_batch(fleet(LAYOUT), "echo hi", "bash", 30)

    assert len(batch.results) == 7
    errors = [r.instance_id for r in batch.results if r.status is ResultStatus.ERROR]
    assert errors == ["i-e1", "i-e2"]
    assert cloud.execute_script(fleet(LAYOUT)[0], "echo hi").stdout == "i-a1"
