"""linux-qc-patching-window end to end on the SSM agent emulator: thirty fake servers (RHEL 8.10,
Amazon Linux 2023, Ubuntu 22.04) over two commercial accounts and GovCloud, really installed,
really rebooted through the agent's exit-194 protocol, and checked wave by wave."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows import linux_qc_patching_window
from flows.linux_patching.window.patching import INSTALL_POLL_CEILING_SECONDS
from flows.linux_patching.window.result import FinalStatus, WindowResult
from flows.store import Store
from tests.flows.linux_patching.window.hosts import (
    DISTROS,
    Distro,
    HostSpec,
    WindowServer,
    build_server,
    prep,
)
from tests.prefect_artifacts import read_artifacts
from tests.providers.aws.ssm_fixtures import (
    GOV_ACCOUNT,
    HOME_ACCOUNT,
    ROLE_ACCOUNT,
    Collected,
    record_collects,
)
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

CHANGE = "CHG0013001"
WORKFLOW = "linux-qc-patching-window"
PLACES = [
    (HOME_ACCOUNT, "us-east-1"),
    (HOME_ACCOUNT, "us-west-2"),
    (ROLE_ACCOUNT, "us-east-1"),
    (GOV_ACCOUNT, "us-gov-west-1"),
]
ODD = {
    "rhel-01": HostSpec(Distro.RHEL, already_on_target=True),
    "rhel-02": HostSpec(Distro.RHEL, boot_full=True),
    "rhel-03": HostSpec(Distro.RHEL, install_fails=True),
    "rhel-04": HostSpec(Distro.RHEL),  # its boot falls back to the old kernel
    "rhel-05": HostSpec(Distro.RHEL),  # its patchme.sh was changed after prep
    "al-01": HostSpec(Distro.AL2023, falcon_unsupported=True),
    "al-02": HostSpec(Distro.AL2023, falcon_stops_on_boot=True),
    "ubuntu-01": HostSpec(Distro.UBUNTU, lock_held=True),
    "ubuntu-02": HostSpec(Distro.UBUNTU, patchme_by_linux_patcher=True),
}
EXPECTED = {
    "rhel-01": FinalStatus.ALREADY_PATCHED,
    "rhel-02": FinalStatus.REFUSED_PREFLIGHT,
    "rhel-03": FinalStatus.INSTALL_FAILED,
    "rhel-04": FinalStatus.WRONG_KERNEL,
    "rhel-05": FinalStatus.REFUSED_PREFLIGHT,
    "al-01": FinalStatus.REFUSED_PREFLIGHT,
    "al-02": FinalStatus.POST_FAILED,
    "ubuntu-01": FinalStatus.REFUSED_PREFLIGHT,
}


@dataclass
class Thirty:
    servers: dict[str, WindowServer]
    specs: dict[str, HostSpec]

    def by_id(self, instance_id: str) -> WindowServer:
        return next(s for s in self.servers.values() if s.instance_id == instance_id)


def thirty_servers(world: SsmWorld) -> Thirty:
    """12 RHEL, 10 AL2023 and 8 Ubuntu servers dealt over the four places, prepped."""
    names = (
        [f"rhel-{n:02d}" for n in range(1, 13)]
        + [f"al-{n:02d}" for n in range(1, 11)]
        + [f"ubuntu-{n:02d}" for n in range(1, 9)]
    )
    distro = {"rhel": Distro.RHEL, "al": Distro.AL2023, "ubuntu": Distro.UBUNTU}
    specs = {n: ODD.get(n, HostSpec(distro[n.split("-")[0]])) for n in names}
    servers = {
        name: build_server(world, *PLACES[i % len(PLACES)], name, specs[name])
        for i, name in enumerate(names)
    }
    prep(Store.default(), CHANGE, list(servers.values()), specs)
    world.boot_falls_back(servers["rhel-04"].instance_id)
    patchme = servers["rhel-05"].instance.root / f"root/{CHANGE}/patchme.sh"
    patchme.write_text(patchme.read_text().replace("553.45.1", "553.16.1"))
    return Thirty(servers, specs)


def install_commands(world: SsmWorld) -> Counter[str]:
    """Install commands (wave-N, not their post checks) per instance."""
    sent: Counter[str] = Counter()
    for command in world.commands:
        step = re.search(r" (wave-\d+(?:-post)?) ", command.comment)
        if step and not step.group(1).endswith("-post"):
            sent.update(command.instance_ids)
    return sent


def check_final_statuses(fleet: Thirty, result: WindowResult) -> None:
    statuses = {fleet.by_id(i.instance_id).hostname: i for i in result.instances}
    for name, outcome in statuses.items():
        assert outcome.status is EXPECTED.get(name, FinalStatus.PATCHED), (name, outcome)
    assert "/boot has 19 MB free" in statuses["rhel-02"].reasons[0]
    assert "CrowdStrike's falcon-kernel-check" in statuses["al-01"].reasons[0]
    assert "package-manager lock is held" in statuses["ubuntu-01"].reasons[0]
    assert (
        "patchme.sh names 4.18.0-553.16.1.el8_10 but prep staged" in statuses["rhel-05"].reasons[0]
    )
    assert "Transaction test error" in statuses["rhel-03"].reasons[0]
    assert statuses["rhel-04"].reasons[0].startswith("booted 4.18.0-553.5.1.el8_10.x86_64 instead")
    assert statuses["al-02"].post_verdict == "failed"
    assert "CrowdStrike (falcon-sensor) was running at prep QC" in statuses["al-02"].reasons[0]
    for name, outcome in statuses.items():
        if outcome.status is FinalStatus.PATCHED:
            target = fleet.servers[name].facts.target
            assert fleet.servers[name].running.startswith(target)
            assert outcome.kernel_after is not None and outcome.kernel_after.startswith(target)
            assert outcome.kernel_before == fleet.servers[name].facts.running
            assert outcome.seconds_to_back_online and outcome.seconds_to_back_online > 0
            assert outcome.boot_id_after != outcome.boot_id_before
            assert outcome.post_verdict == "passed"
    assert result.failures == 3 and not result.halted


def check_the_waves(fleet: Thirty, result: WindowResult) -> None:
    # The canary proves each kernel group once; then waves of 25% of the other 22.
    assert [(w.kind.value, len(w.instance_ids)) for w in result.waves] == [
        ("canary", 3),
        ("wave", 6),
        ("wave", 6),
        ("wave", 6),
        ("wave", 4),
    ]
    canary = [fleet.by_id(i) for i in result.waves[0].instance_ids]
    assert sorted(s.distro.value for s in canary) == ["al2023", "rhel", "ubuntu"]

    # Each wave takes its share of every place: a place with at least one instance per wave
    # left after the canary is in every wave (which places those are depends on the canary,
    # the first of each kernel group in instance id order, and ids are random).
    def place(instance_id: str) -> tuple[str, str]:
        server = fleet.by_id(instance_id)
        return server.instance.account_id, server.instance.region

    later = result.waves[1:]
    left = Counter(place(i) for wave in later for i in wave.instance_ids)
    in_every_wave = {p for p, n in left.items() if n >= len(later)}
    assert len(in_every_wave) >= 2
    for wave in later:
        assert in_every_wave <= {place(i) for i in wave.instance_ids}, wave.number
    assert all(w.state == "done" and w.started_at and w.ended_at for w in result.waves)


def check_each_server_installed_and_rebooted_once(world: SsmWorld, fleet: Thirty) -> None:
    sent = install_commands(world)
    for name, server in fleet.servers.items():
        expected = EXPECTED.get(name, FinalStatus.PATCHED)
        in_a_wave = expected not in (FinalStatus.ALREADY_PATCHED, FinalStatus.REFUSED_PREFLIGHT)
        assert sent[server.instance_id] == (1 if in_a_wave else 0), name
        rebooted = in_a_wave and expected is not FinalStatus.INSTALL_FAILED
        assert world.reboots[server.instance_id] == (1 if rebooted else 0), name
        # The servers' own reboot (the Linux Patcher's patchme.sh has one) is never used.
        assert server.calls("reboot") == [] and server.calls("shutdown") == [], name
    assert fleet.servers["rhel-03"].calls("grubby") == []  # nothing after a failed install


def artifact(key: str) -> Any:
    """The artifact's data; a table as its rows, each text cell as the UI shows it (cells are
    escaped markdown: ``->`` is stored as ``-&gt;``)."""
    found = read_artifacts(keys=[key])
    assert found, f"no artifact {key}"
    data = max(found, key=lambda a: a.created).data
    if not (isinstance(data, str) and key.endswith(("instances", "waves", "preflight"))):
        return data
    return [
        {k: html.unescape(v) if isinstance(v, str) else v for k, v in row.items()}
        for row in json.loads(data)
    ]


def check_records_report_and_artifacts(fleet: Thirty, result: WindowResult) -> None:
    store = Store.default()
    runs = {r.step: r for r in store.runs_for_change(CHANGE) if r.workflow == WORKFLOW}
    assert set(runs) == {"preflight"} | {f"wave-{n}" for n in range(1, 6)} | {
        f"wave-{n}-post" for n in range(1, 6)
    }
    assert len(store.executions(runs["preflight"].id)) == 30
    for wave in result.waves:
        executions = store.executions(runs[f"wave-{wave.number}"].id)
        assert sorted(e.instance_id for e in executions) == sorted(wave.instance_ids)
        assert all(e.parsed and e.parsed["status"] for e in executions)
    report = Path(result.report_path)
    assert re.fullmatch(rf"window_report_{CHANGE}_\d{{8}}T\d{{6}}Z\.md", report.name)
    text = report.read_text()
    assert "## Needs attention" in text and "wrong_kernel" in text and "rhel-04" in text
    rows = {r["hostname"]: r for r in artifact(f"linux-qc-window-{CHANGE.lower()}-instances")}
    assert rows["rhel-06"]["status"] == "patched"
    assert rows["rhel-06"]["kernel (old -> new)"].startswith("4.18.0-553.5.1.el8_10.x86_64 -> ")
    assert rows["rhel-02"]["reasons"].startswith("/boot has")
    assert len(artifact(f"linux-qc-window-{CHANGE.lower()}-waves")) == 5
    assert len(artifact(f"linux-qc-window-{CHANGE.lower()}-preflight")) == 30
    # Two progress cards however many waves: the window's, and the step at work's.
    cards = [
        a.key
        for a in read_artifacts(flow_run_id=runs["preflight"].flow_run_id)
        if a.type == "progress"
    ]
    prefix = f"linux-qc-window-{CHANGE.lower()}"
    assert sorted(cards) == [f"{prefix}-progress", f"{prefix}-step-progress"]


def check_the_failure_event(result: WindowResult) -> None:
    EventsWorker.instance().drain()
    assert AssertingEventsClient.last is not None
    events = {e.event: e for e in AssertingEventsClient.last.events}
    assert "cloudops.window.halted" not in events
    assert events["cloudops.window.failed"].payload["counts"] == result.status_counts()


def check_installs_polled_within_their_ceiling(
    collects: list[Collected], result: WindowResult
) -> None:
    """The next wave waits for the last server of this one to be seen back: the installs are
    looked at every INSTALL_POLL_CEILING_SECONDS at most; the other commands on the provider's
    own schedule."""
    store = Store.default()
    [flow_run_id] = {r.flow_run_id for r in store.runs_for_change(CHANGE) if r.workflow == WORKFLOW}
    installs = {
        ref.chunk_key
        for wave in result.waves
        for ref in store.commands_for(f"{flow_run_id}/wave-{wave.number}")
    }
    ceilings = {c.chunk_key: c.poll_ceiling for c in collects}
    assert installs and installs < set(ceilings)
    assert {ceilings[key] for key in installs} == {INSTALL_POLL_CEILING_SECONDS}
    assert {c for key, c in ceilings.items() if key not in installs} == {None}


@pytest.mark.usefixtures("asserting_events_worker")
def test_thirty_servers_canary_per_group_then_waves_each_with_its_final_status(
    ssm_world: SsmWorld, window_provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = thirty_servers(ssm_world)
    collects = record_collects(monkeypatch)

    result = linux_qc_patching_window(
        CHANGE,
        provider=window_provider,
        wave_size="25%",
        max_failures="20%",
        require_approval=False,
    )

    assert result.status_counts() == {
        "patched": 22,
        "already_patched": 1,
        "refused_preflight": 4,
        "install_failed": 1,
        "wrong_kernel": 1,
        "post_failed": 1,
    }
    assert DISTROS  # three distributions took part
    check_final_statuses(fleet, result)
    check_the_waves(fleet, result)
    check_each_server_installed_and_rebooted_once(ssm_world, fleet)
    check_records_report_and_artifacts(fleet, result)
    check_the_failure_event(result)
    check_installs_polled_within_their_ceiling(collects, result)
