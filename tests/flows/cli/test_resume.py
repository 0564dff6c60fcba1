"""``cloudops resume``: a paused run answered from a terminal with the same typed input its UI
form gives, refused where the form would refuse, on a real (temporary) Prefect server.

The runs pause in small flows of this test with the forms of the flows: ``Approval`` and
``HaltDecision`` (the patch window's), and the prep kernel choice form.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelled

from flows.common.pauses import Approval, HaltDecision
from flows.linux_patching.prep.kernel_choice import kernel_choice_form
from flows.linux_patching.prep.kernel_groups import KernelGroup
from flows.linux_patching.prep.parameters import KernelChoiceRequest
from tests.flows.cli.conftest import Cloudops

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

RHEL8 = "RHEL8.10 - Kernel 4.18.0-553"
AL2 = "AL2 - Kernel 4.14.343-261"
GROUPS = [
    KernelGroup(
        name=RHEL8,
        distro="RHEL8.10",
        base_kernel="4.18.0-553",
        instance_ids=["i-00000000000000001"],
        available_kernels=["4.18.0-553.8.1.el8_10", "4.18.0-553.45.1.el8_10"],
    ),
    KernelGroup(
        name=AL2,
        distro="AL2",
        base_kernel="4.14.343-261",
        instance_ids=["i-00000000000000002"],
        available_kernels=["4.14.345-262.561.amzn2"],
    ),
]


class PausedRun:
    """A flow run of this test waiting on ``form``; ``answer()`` is what it received."""

    def __init__(self, form: type[RunInput]) -> None:
        self.outcome: dict[str, Any] = {}

        @flow(name=f"waits-for-{form.__name__.lower()}")
        def waiting() -> dict[str, Any]:
            received = pause_flow_run(wait_for_input=form, timeout=120, poll_interval=1)
            return received.model_dump(by_alias=True)

        def run() -> None:
            try:
                self.outcome["answer"] = waiting()
            except BaseException as exc:  # handed to the test thread
                self.outcome["error"] = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.id, self.name = self._wait_until_paused(f"waits-for-{form.__name__.lower()}")

    @staticmethod
    def _wait_until_paused(flow_name: str) -> tuple[UUID, str]:
        deadline = time.monotonic() + 60
        paused = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                runs = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                    flow_run_filter=paused,
                )
                if runs:
                    return runs[0].id, runs[0].name
                time.sleep(0.3)
        raise AssertionError(f"no run of {flow_name} paused")

    def state(self) -> str:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(self.id).state
        return state.name if state else "none"

    def answer(self) -> dict[str, Any]:
        self.thread.join(timeout=60)
        assert "error" not in self.outcome, self.outcome.get("error")
        return self.outcome["answer"]


@pytest.fixture
def paused() -> Iterator[Callable[[type[RunInput]], PausedRun]]:
    runs: list[PausedRun] = []

    def start(form: type[RunInput]) -> PausedRun:
        runs.append(PausedRun(form))
        return runs[-1]

    yield start
    for run in runs:  # a run a test left paused must not outlive it
        if run.thread.is_alive():
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run.id, Cancelled(), force=True)
            run.thread.join(timeout=30)


def test_an_approval_is_sent_as_the_ui_form_would(cloudops: Cloudops, paused) -> None:
    run = paused(Approval)

    missing = cloudops("resume", str(run.id), "--comment", "no name given")
    blank = cloudops("resume", str(run.id), "--approver", "   ")
    done = cloudops("resume", str(run.id), "--approver", "Jane Doe", "--comment", "on time")

    assert missing.exit_code == 2
    assert "'approver' is a required property" in missing.stderr
    assert "it asks for: approver, required; comment, default ''" in missing.stderr
    assert blank.exit_code == 2 and "approver" in blank.stderr  # the form's own check
    assert done.exit_code == 0, done.output
    assert f"resumed flow run {run.name}" in done.stdout
    assert run.answer() == {"approver": "Jane Doe", "comment": "on time"}


def test_a_halt_decision_refuses_what_the_form_refuses(cloudops: Cloudops, paused) -> None:
    run = paused(HaltDecision)

    retry = cloudops(
        "resume", str(run.id), "--decision", "retry", "--approver", "Raj", "--reason", "why not"
    )
    stray = cloudops("resume", str(run.id), "--kernel", f"{RHEL8}=4.18.0-553.8.1.el8_10")
    assert run.state() == "Paused"
    done = cloudops(
        "resume", str(run.id), "--decision", "abort", "--approver", "Raj", "--reason", "canary down"
    )

    assert retry.exit_code == 2
    assert "'retry' is not one of ['continue', 'abort']" in retry.stderr
    assert "decision (one of: continue, abort), required" in retry.stderr
    assert stray.exit_code == 2 and f"no kernel group {RHEL8!r}" in stray.stderr
    assert done.exit_code == 0, done.output
    assert run.answer() == {"decision": "abort", "approver": "Raj", "reason": "canary down"}


def test_the_kernel_choice_takes_only_a_groups_own_kernels(cloudops: Cloudops, paused) -> None:
    form = kernel_choice_form(GROUPS, KernelChoiceRequest(), "CHG0012345")
    run = paused(form)

    outside = cloudops("resume", str(run.id), "--kernel", f"{RHEL8}=4.18.0-553.99.1.el8_10")
    hostile = cloudops("resume", str(run.id), "--kernel", f"{RHEL8}=4.18.0-553.8.1.el8_10;reboot")
    unknown = cloudops("resume", str(run.id), "--kernel", "RHEL7 - Kernel 3.10=3.10.0-1")
    malformed = cloudops("resume", str(run.id), "--kernel", "4.18.0-553.8.1.el8_10")
    one_group = cloudops("resume", str(run.id), "--kernel", f"{RHEL8}=4.18.0-553.8.1.el8_10")
    both = ("--kernel", f"{RHEL8}=4.18.0-553.8.1.el8_10", "--kernel", f"{AL2}=")
    dry = cloudops("resume", str(run.id), *both, "--dry-run")
    assert run.state() == "Paused"
    done = cloudops("resume", str(run.id), *both)

    for refused in (outside, hostile, unknown, malformed, one_group):
        assert refused.exit_code == 2, refused.output
    # In a terminal nobody sees a pre-filled kernel: every group is named, or nothing is sent.
    assert f"kernel group {AL2!r} is not named" in one_group.stderr
    assert "4.18.0-553.8.1.el8_10, 4.18.0-553.45.1.el8_10" in outside.stderr  # the options
    assert "no kernel group 'RHEL7 - Kernel 3.10'" in unknown.stderr
    assert 'write it as "GROUP=KERNEL"' in malformed.stderr
    assert dry.exit_code == 0 and "dry run" in dry.stderr
    assert done.exit_code == 0, done.output
    assert run.answer() == {RHEL8: "4.18.0-553.8.1.el8_10", AL2: None}  # AL2: stage nothing


def test_runs_that_cannot_be_resumed_say_why(cloudops: Cloudops, paused) -> None:
    run = paused(Approval)
    cloudops("resume", str(run.id), "--approver", "Jane")
    run.answer()

    finished = cloudops("resume", str(run.id), "--approver", "Jane")
    unknown = cloudops("resume", "5a1f0d6e-0000-4000-8000-000000000000")
    no_such_name = cloudops("resume", "no-such-run-name")

    assert finished.exit_code == 1 and "not paused: nothing to resume" in finished.stderr
    assert unknown.exit_code == 1 and "there is no flow run 5a1f0d6e" in unknown.stderr
    assert no_such_name.exit_code == 1 and "no flow run named 'no-such-run-name'" in (
        no_such_name.stderr
    )


def test_an_unreachable_or_unnamed_api_is_an_error_not_a_traceback(cloudops: Cloudops) -> None:
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        down = cloudops("resume", "5a1f0d6e-0000-4000-8000-000000000000", "--approver", "J")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        unnamed = cloudops("resume", "5a1f0d6e-0000-4000-8000-000000000000")

    assert down.exit_code == 1
    assert "cannot reach the Prefect API at http://127.0.0.1:9/api" in down.stderr
    assert unnamed.exit_code == 1 and "PREFECT_API_URL is not set" in unnamed.stderr
    assert "Traceback" not in down.output + unnamed.output
