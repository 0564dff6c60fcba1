"""The window before it touches anything: a dry run shows the preflight and the waves and
installs nothing; bad parameters, and a provider that cannot reboot, are refused at once."""

from __future__ import annotations

import pytest
from prefect.exceptions import ParameterTypeError

from flows import linux_qc_patching_window
from flows.linux_patching.window.parameters import WindowParameterError
from flows.linux_patching.window.result import FinalStatus
from flows.store import Store
from providers.local import LocalProvider
from tests.flows.linux_patching.window.hosts import Distro, HostSpec, prepped_fleet
from tests.flows.linux_patching.window.test_flow import install_commands
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")


def test_a_dry_run_shows_the_preflight_and_the_waves_and_installs_nothing(
    ssm_world: SsmWorld, window_provider: str
) -> None:
    change = "CHG0013201"
    servers = prepped_fleet(
        ssm_world,
        change,
        {
            **{f"rhel-{n}": HostSpec(Distro.RHEL) for n in range(1, 5)},
            "al-1": HostSpec(Distro.AL2023, boot_full=True),
            "ubuntu-1": HostSpec(Distro.UBUNTU),
        },
    )

    result = linux_qc_patching_window(
        change, provider=window_provider, wave_size="50%", dry_run=True
    )

    assert result.dry_run
    assert [(w.kind.value, len(w.instance_ids), w.state) for w in result.waves] == [
        ("canary", 2, "planned (dry run)"),
        ("wave", 2, "planned (dry run)"),
        ("wave", 1, "planned (dry run)"),
    ]
    refused = result.by_status(FinalStatus.REFUSED_PREFLIGHT)
    assert [o.instance_id for o in refused] == [servers["al-1"].instance_id]
    assert all(
        o.reasons == ["dry run: nothing installed"]
        for o in result.by_status(FinalStatus.NOT_STARTED)
    )
    assert not install_commands(ssm_world) and not ssm_world.reboots
    for server in servers.values():  # the preflight asked the package manager, read only
        assert not [c for c in server.calls() if " install" in c or c.startswith("grubby")]
    steps = {r.step for r in Store.default().runs_for_change(change) if "window" in r.workflow}
    assert steps == {"preflight"}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"change_number": "CHG 1; reboot"}, "change_number"),
        ({"wave_size": "0"}, "wave_size '0' must be a whole number of instances, at least 1"),
        ({"wave_size": "120%"}, "wave_size '120%' must be a percentage"),
        ({"max_failures": "lots"}, "max_failures 'lots' must be a count"),
        ({"window_end": "2026-01-01T00:00:00"}, "has no time zone"),
        ({"window_end": "2001-01-01T00:00:00+00:00"}, "has already passed"),
        ({"workdir": "/root/../etc"}, "workdir"),
        ({"reboot_timeout_seconds": 5}, "reboot_timeout_seconds 5 must be between 30"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_sent(
    ssm_world: SsmWorld, window_provider: str, arguments: dict, problem: str
) -> None:
    prepped_fleet(ssm_world, "CHG0013202", {"rhel-1": HostSpec(Distro.RHEL)})

    with pytest.raises(WindowParameterError, match="nothing was sent") as refused:
        linux_qc_patching_window(
            **{"change_number": "CHG0013202", "provider": window_provider, **arguments}
        )

    assert problem in str(refused.value)
    assert not ssm_world.send_commands_per_instance
    assert ("ssm", "DescribeInstanceInformation") not in ssm_world.calls


@pytest.mark.parametrize(
    "arguments", [{"on_halt": "retry"}, {"required_agents": ["falcon-sensor", "nessus"]}]
)
def test_a_choice_outside_a_list_is_refused_by_the_form(
    ssm_world: SsmWorld, window_provider: str, arguments: dict
) -> None:
    prepped_fleet(ssm_world, "CHG0013202", {"rhel-1": HostSpec(Distro.RHEL)})

    with pytest.raises(ParameterTypeError, match="Input should be"):
        linux_qc_patching_window(
            **{"change_number": "CHG0013202", "provider": window_provider, **arguments}
        )

    assert not ssm_world.send_commands_per_instance


def test_the_local_provider_never_patches_this_worker_but_runs_a_dry_run() -> None:
    localhost = LocalProvider.TARGET

    with pytest.raises(WindowParameterError, match=r"never reboots it\): run with dry_run=true"):
        linux_qc_patching_window("CHG0013203", provider="local", instances=[localhost])
    result = linux_qc_patching_window(
        "CHG0013203", provider="local", instances=[localhost], dry_run=True
    )

    [outcome] = result.instances
    assert outcome.status is FinalStatus.REFUSED_PREFLIGHT
    assert "no prep QC is recorded for it in change CHG0013203" in outcome.reasons[0]
    assert result.waves == []
