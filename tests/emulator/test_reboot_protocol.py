"""The emulator's SSM agent reboot protocol: a script that exits 194 asks the agent to reboot
the instance and run it again after boot, and the command follows the whole reboot."""

from __future__ import annotations

import time
from typing import Any

import boto3

from tests.ssm_emulator import EmulatedInstance, SsmWorld

# Asks for one reboot, then reports what it booted. The boot id before the reboot is kept in
# the instance's own files, as a real script would keep it.
REBOOT_ONCE = r"""
state="$CLOUDOPS_ROOT/var/tmp/reboot-test"
mkdir -p "$state"
echo "run on $(cat "$CLOUDOPS_ROOT/proc/sys/kernel/random/boot_id")" >>"$state/runs"
if [ ! -f "$state/asked" ]; then
    cat "$CLOUDOPS_ROOT/proc/sys/kernel/random/boot_id" >"$state/asked"
    echo "first run: rebooting"
    exit 194
fi
echo "booted $(cat "$CLOUDOPS_ROOT/fake/kernel") after $(cat "$state/asked")"
"""


def ssm() -> Any:
    return boto3.client("ssm", region_name="us-east-1")


def send(instance: EmulatedInstance, script: str) -> str:
    return ssm().send_command(
        InstanceIds=[instance.instance_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": [script]},
    )["Command"]["CommandId"]


def invocation(command_id: str) -> dict[str, Any]:
    [found] = ssm().list_command_invocations(CommandId=command_id, Details=True)[
        "CommandInvocations"
    ]
    return found


def ping(instance: EmulatedInstance) -> str:
    [info] = ssm().describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance.instance_id]}]
    )["InstanceInformationList"]
    return info["PingStatus"]


def watch(command_id: str, instance: EmulatedInstance, timeout: float = 20) -> list[tuple]:
    """(status, ping status) at each look until the invocation is final, changes only."""
    seen: list[tuple] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        look = (invocation(command_id)["Status"], ping(instance))
        if not seen or seen[-1] != look:
            seen.append(look)
        if look[0] not in ("Pending", "InProgress"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not final after {timeout} s: {seen}")


def kernel_host(world: SsmWorld, default_after_install: str) -> EmulatedInstance:
    """An instance running kernel "old" whose boot picks ``default_after_install``, or "old"
    again when its boot falls back."""
    instance = world.add_instance()
    instance.write_file("/fake/kernel", "old\n")

    def boot(booted: EmulatedInstance, fell_back: bool) -> None:
        if not fell_back:
            booted.write_file("/fake/kernel", default_after_install + "\n")

    instance.boot_hook = boot
    return instance


def test_exit_194_reboots_once_and_runs_the_script_again(ssm_world: SsmWorld) -> None:
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(1.0)
    instance = kernel_host(ssm_world, "new")
    boot_before = instance.boot_id

    command_id = send(instance, REBOOT_ONCE)
    seen = watch(command_id, instance)

    # InProgress through the reboot, the agent away meanwhile, then the second run's outcome.
    assert ("InProgress", "ConnectionLost") in seen
    assert seen[-1] == ("Success", "Online")
    final = invocation(command_id)["CommandPlugins"][0]
    assert final["ResponseCode"] == 0
    assert final["Output"] == f"booted new after {boot_before}\n"
    assert instance.boot_id != boot_before
    assert ssm_world.reboots[instance.instance_id] == 1 and instance.boots == 1
    runs = (instance.root / "var/tmp/reboot-test/runs").read_text().splitlines()
    assert runs == [f"run on {boot_before}", f"run on {instance.boot_id}"]


def test_a_boot_that_falls_back_keeps_the_old_kernel(ssm_world: SsmWorld) -> None:
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(0.2)
    instance = kernel_host(ssm_world, "new")
    ssm_world.boot_falls_back(instance.instance_id)

    command_id = send(instance, REBOOT_ONCE)
    watch(command_id, instance)

    assert invocation(command_id)["CommandPlugins"][0]["Output"].startswith("booted old after")


def test_an_agent_that_never_returns_leaves_the_command_in_progress(ssm_world: SsmWorld) -> None:
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(0.2)
    instance = kernel_host(ssm_world, "new")
    ssm_world.agent_never_returns(instance.instance_id)

    command_id = send(instance, REBOOT_ONCE)
    time.sleep(1.5)

    assert (invocation(command_id)["Status"], ping(instance)) == ("InProgress", "ConnectionLost")
    assert instance.boots == 1
    # Cancelled by the caller (as a flow does at its deadline), it never runs again.
    ssm().cancel_command(CommandId=command_id)
    assert invocation(command_id)["Status"] == "Cancelled"


def test_simulated_runs_follow_the_protocol_with_their_own_run_time(ssm_world: SsmWorld) -> None:
    ssm_world.command_delay(pending=0.05)
    ssm_world.reboot_time(0.3)
    instance = ssm_world.add_instance()
    ssm_world.simulate(
        lambda inst, script: (
            ("installed\n", "", 194, 0.3) if inst.boots == 0 else ("back\n", "", 0, 0.0)
        )
    )

    command_id = send(instance, "patch")
    seen = watch(command_id, instance)

    assert ("InProgress", "Online") in seen  # the install's own run time
    assert ("InProgress", "ConnectionLost") in seen
    assert seen[-1] == ("Success", "Online")
    assert invocation(command_id)["CommandPlugins"][0]["Output"] == "back\n"
    assert ssm_world.reboots[instance.instance_id] == 1
