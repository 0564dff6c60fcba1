"""linux-qc-patching-prep end to end through the SSM emulator: the scripts run for real in each
instance's sandbox, on fake Linux hosts (uname, dnf/yum/apt, falconctl, df are fakes)."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from pydantic import SecretStr

from blocks import AwsProviderBlock
from flows import linux_qc_patching_prep
from flows.linux_patching.prep.kernel_choice import KernelChoiceError
from flows.linux_patching.prep.parameters import PrepParameterError
from flows.linux_patching.prep.qc import QcVerdict
from flows.linux_patching.prep.result import PrepResult
from flows.linux_patching.prep_record import PREP_WORKFLOW as WORKFLOW
from flows.parsers import QcReport
from flows.store import Store
from providers.base import Platform, Target
from tests.prefect_artifacts import read_artifacts
from tests.ssm_emulator import EmulatedInstance, SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

HOME_ACCOUNT = "111111111111"
ROLE_ACCOUNT = "222222222222"
REGION = "us-east-1"
CHANGE = "CHG0099001"
RHEL8_GROUP = "RHEL8.10 - Kernel 4.18.0-553"
AL2_GROUP = "AL2 - Kernel 4.14.343-261"
RHEL9_GROUP = "RHEL9.4 - Kernel 5.14.0-427"
UBUNTU_GROUP = "Ubuntu22.04 - Kernel 5.15.0-101"
GB_KB = 1024 * 1024

RHEL8_OS = 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="8.10"\n'
RHEL9_OS = 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="9.4"\n'
AL2_OS = 'NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2"\n'
UBUNTU_OS = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n'

RHEL8_KERNEL = "4.18.0-553.5.1.el8_10.x86_64"
# Long repository names make yum/dnf wrap a line: the package alone, its version on the next.
RHEL8_LISTING_FULL = """Available Packages
kernel.x86_64                4.18.0-513.24.1.el8_9              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.5.1.el8_10              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.8.1.el8_10              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.45.1.el8_10             rhel-8-for-x86_64-baseos-rpms
kernel.x86_64
                             4.18.0-553.16.1.el8_10             rhel-8-for-x86_64-baseos-eus-rpms"""
RHEL8_LISTING_SHORT = """Available Packages
kernel.x86_64                4.18.0-553.8.1.el8_10              rhel-8-for-x86_64-baseos-rpms
kernel.x86_64                4.18.0-553.16.1.el8_10             rhel-8-for-x86_64-baseos-rpms"""
RHEL8_KERNELS = ["4.18.0-553.8.1.el8_10", "4.18.0-553.16.1.el8_10", "4.18.0-553.45.1.el8_10"]
AL2_KERNEL = "4.14.343-261.564.amzn2.x86_64"
AL2_LISTING = """Available Packages
kernel.x86_64                    4.14.345-262.561.amzn2                    amzn2-core
kernel.x86_64                    4.14.348-265.562.amzn2                    amzn2-core"""
RHEL9_KERNEL = "5.14.0-427.13.1.el9_4.x86_64"
UBUNTU_KERNEL = "5.15.0-101-generic"
UBUNTU_PACKAGES = ["linux-image-5.15.0-102-generic", "linux-image-5.15.0-105-generic"]


@dataclass
class Host:
    """How a fake Linux host is built in an emulated instance's sandbox."""

    hostname: str
    os_release: str
    kernel: str
    package_manager: str  # dnf, yum or apt
    listing: str = ""
    crowdstrike: bool = True
    var_free_kb: int = 8 * GB_KB


@dataclass
class Fleet:
    world: SsmWorld
    block: AwsProviderBlock
    instances: dict[str, EmulatedInstance] = field(default_factory=dict)

    def target(self, key: str) -> Target:
        i = self.instances[key]
        return Target(
            instance_id=i.instance_id,
            account_id=i.account_id,
            region=i.region,
            platform=Platform(i.platform),
            name=key,
        )

    def targets(self) -> list[Target]:
        return [self.target(key) for key in self.instances]

    def key_of(self, instance_id: str) -> str:
        return next(k for k, i in self.instances.items() if i.instance_id == instance_id)

    def sent(self, key: str) -> int:
        return self.world.send_commands_per_instance[self.instances[key].instance_id]

    def server_file(self, key: str, path: str) -> Path:
        return self.instances[key].root / path.lstrip("/")

    def calls(self, key: str) -> list[str]:
        log = self.server_file(key, "/fake-calls.log")
        return log.read_text().splitlines() if log.exists() else []


def _logged(body: str) -> str:
    # Every fake command records its call, so a test can prove nothing was installed or rebooted.
    return 'printf \'%s\\n\' "$(basename "$0") $*" >>"$CLOUDOPS_ROOT/fake-calls.log"\n' + body


def build_host(instance: EmulatedInstance, host: Host) -> None:
    instance.write_file("/etc/os-release", host.os_release)
    instance.fake_command("hostname", f"echo {host.hostname}")
    instance.fake_command("uname", f'[ "${{1:-}}" = -r ] && echo {host.kernel} || echo Linux')
    instance.fake_command("uptime", "echo '2024-04-02 06:12:44'")
    instance.fake_command(
        "df",
        "echo 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        f"echo '/dev/mapper/rootvg-varlv 10475520 1048576 {host.var_free_kb} 10% /var'",
    )
    for name in ("reboot", "shutdown", "grubby", "rpm", "dpkg"):
        instance.fake_command(name, _logged("exit 0"))
    if host.crowdstrike:
        instance.fake_command(
            "falconctl",
            'case "$*" in *--rfm-state*) echo "rfm-state=false, rfm-reason=None, code=0x0." ;;\n'
            '*--version*) echo "version = 7.10.16303.0" ;; *) exit 1 ;; esac',
        )
        instance.fake_command("systemctl", "echo active")
    if host.package_manager in ("dnf", "yum"):
        listing = (
            f"cat <<'LISTING'\n{host.listing}\nLISTING"
            if host.listing
            else "echo 'Error: No matching Packages to list' >&2; exit 1"
        )
        instance.fake_command(
            host.package_manager,
            _logged(
                'case "$*" in\n  *makecache*) echo "Metadata cache created." ;;\n'
                f"  *list*available*kernel*)\n{listing}\n    ;;\n  *) exit 1 ;;\nesac"
            ),
        )
    else:
        instance.fake_command("apt-get", _logged('case "$*" in *update*) exit 0 ;; esac; exit 1'))
        packages = "\n".join(UBUNTU_PACKAGES)
        instance.fake_command(
            "apt-cache",
            f"""while read -r p; do
    printf '%s\\n' "$p" | grep -Eq -- "$3" && echo "$p - Signed kernel image"
done <<'PACKAGES'
{packages}
PACKAGES
exit 0""",
        )


def make_fleet(world: SsmWorld, hosts: dict[str, tuple[str, Host | str]]) -> Fleet:
    """Instances by key: (account, a Host, or 'offline' / 'windows')."""
    world.add_role(ROLE_ACCOUNT)
    world.command_delay(pending=0.05)
    keys = world.credentials(HOME_ACCOUNT)
    block = AwsProviderBlock(
        environment="com",
        access_key_id=SecretStr(keys.access_key_id),
        secret_access_key=SecretStr(keys.secret_access_key),
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
    )
    fleet = Fleet(world=world, block=block)
    for key, (account, host) in hosts.items():
        platform = "windows" if host == "windows" else "linux"
        instance = world.add_instance(account_id=account, region=REGION, platform=platform)
        if host == "offline":
            world.set_offline(instance.instance_id)
        elif isinstance(host, Host):
            build_host(instance, host)
        fleet.instances[key] = instance
    return fleet


def rhel8(name: str, listing: str = RHEL8_LISTING_FULL, **kwargs: Any) -> Host:
    return Host(name, RHEL8_OS, RHEL8_KERNEL, "dnf", listing, **kwargs)


def al2(name: str, **kwargs: Any) -> Host:
    return Host(name, AL2_OS, AL2_KERNEL, "yum", AL2_LISTING, **kwargs)


TWELVE = {
    "a-rhel-1": (HOME_ACCOUNT, rhel8("a-rhel-1")),
    "a-rhel-2": (HOME_ACCOUNT, rhel8("a-rhel-2", RHEL8_LISTING_SHORT)),
    "a-rhel-3": (HOME_ACCOUNT, rhel8("a-rhel-3")),
    "a-rhel-lowdisk": (HOME_ACCOUNT, rhel8("a-rhel-lowdisk", var_free_kb=GB_KB)),
    "a-al2": (HOME_ACCOUNT, al2("a-al2")),
    "a-offline": (HOME_ACCOUNT, "offline"),
    "b-rhel-1": (ROLE_ACCOUNT, rhel8("b-rhel-1", RHEL8_LISTING_SHORT)),
    "b-rhel-2": (ROLE_ACCOUNT, rhel8("b-rhel-2")),
    "b-ubuntu": (ROLE_ACCOUNT, Host("b-ubuntu", UBUNTU_OS, UBUNTU_KERNEL, "apt")),
    "b-al2-nocs": (ROLE_ACCOUNT, al2("b-al2-nocs", crowdstrike=False)),
    "b-rhel9": (ROLE_ACCOUNT, Host("b-rhel9", RHEL9_OS, RHEL9_KERNEL, "dnf")),
    "b-windows": (ROLE_ACCOUNT, "windows"),
}


@pytest.fixture
def twelve(ssm_world: SsmWorld) -> Fleet:
    return make_fleet(ssm_world, TWELVE)


@pytest.fixture
def two_rhel(ssm_world: SsmWorld) -> Fleet:
    return make_fleet(
        ssm_world,
        {"r1": (HOME_ACCOUNT, rhel8("r1")), "r2": (ROLE_ACCOUNT, rhel8("r2"))},
    )


def patchme_kernel(fleet: Fleet, key: str, workdir: str = "/root") -> str | None:
    path = fleet.server_file(key, f"{workdir}/{CHANGE}/patchme.sh")
    if not path.exists():
        return None
    match = re.search(r'^newkernel="([^"]*)"$', path.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def check_the_qc_verdicts(fleet: Fleet, result: PrepResult) -> dict[str, QcVerdict]:
    verdicts = {fleet.key_of(i.instance_id): i.verdict for i in result.instances}
    assert verdicts == {
        **{k: QcVerdict.PASSED for k in ("a-rhel-1", "a-rhel-2", "a-rhel-3", "a-al2")},
        **{k: QcVerdict.PASSED for k in ("b-rhel-1", "b-rhel-2", "b-ubuntu", "b-rhel9")},
        "a-rhel-lowdisk": QcVerdict.FAILED,
        "b-al2-nocs": QcVerdict.FAILED,
        "a-offline": QcVerdict.UNREACHABLE,
        "b-windows": QcVerdict.NOT_APPLICABLE,
    }
    reasons = {fleet.key_of(i.instance_id): " ".join(i.reasons) for i in result.instances}
    assert "disk space check FAILED" in reasons["a-rhel-lowdisk"]
    assert "CrowdStrike is not running" in reasons["b-al2-nocs"]
    assert "Windows" in reasons["b-windows"]
    # Neither the offline nor the Windows server was ever sent anything.
    assert fleet.sent("a-offline") == 0 and fleet.sent("b-windows") == 0
    return verdicts


def check_the_kernel_groups(fleet: Fleet, result: PrepResult) -> None:
    groups = {g.name: g for g in result.groups}
    assert list(groups) == [AL2_GROUP, RHEL8_GROUP, RHEL9_GROUP, UBUNTU_GROUP]
    rhel = ("a-rhel-1", "a-rhel-2", "a-rhel-3", "b-rhel-1", "b-rhel-2")
    assert set(groups[RHEL8_GROUP].instance_ids) == {fleet.instances[k].instance_id for k in rhel}
    # The union of the group's lists, sorted as versions (553.8 < 553.16 < 553.45).
    assert groups[RHEL8_GROUP].available_kernels == RHEL8_KERNELS
    assert groups[UBUNTU_GROUP].available_kernels == ["5.15.0-102-generic", "5.15.0-105-generic"]
    assert groups[RHEL9_GROUP].available_kernels == []


def check_the_staging(fleet: Fleet, result: PrepResult) -> None:
    # Staging wrote the chosen kernel in every instance of the chosen groups, and only there.
    for key in ("a-rhel-1", "a-rhel-2", "a-rhel-3", "b-rhel-1", "b-rhel-2"):
        assert patchme_kernel(fleet, key) == "4.18.0-553.16.1.el8_10"
    assert patchme_kernel(fleet, "a-al2") == "4.14.348-265.562.amzn2"
    for key in ("b-ubuntu", "b-rhel9", "a-rhel-lowdisk", "b-al2-nocs"):
        assert patchme_kernel(fleet, key) is None
    decisions = {d.group: d for d in result.decisions}
    assert decisions[UBUNTU_GROUP].reason == "no kernel was chosen for this group"
    assert "no kernel update is available" in (decisions[RHEL9_GROUP].reason or "")
    assert len(result.staged_kernels()) == 6
    # Staging installs nothing and reboots nothing.
    for key in fleet.instances:
        calls = fleet.calls(key)
        assert not [c for c in calls if "install" in c or c.startswith(("reboot", "shutdown"))]
    # The QC report was saved on each server in the change folder.
    saved = fleet.server_file("b-ubuntu", f"/root/{CHANGE}/qc_report.txt").read_text()
    assert saved.startswith("===== QC report for b-ubuntu =====")


def check_the_reports(
    fleet: Fleet, result: PrepResult, verdicts: dict[str, QcVerdict], data_dir: Path
) -> None:
    final = Path(result.final_report or "")
    assert re.fullmatch(rf"qc_final_report_{CHANGE}_\d{{8}}T\d{{6}}Z\.md", final.name)
    assert final.parent == data_dir / "reports"
    text = final.read_text()
    reached = [k for k, v in verdicts.items() if v in (QcVerdict.PASSED, QcVerdict.FAILED)]
    for key in reached:
        assert f"===== QC report for {key} =====" in text
    assert text.count('newkernel="4.18.0-553.16.1.el8_10"') == 5
    assert text.count('newkernel="4.14.348-265.562.amzn2"') == 1

    summary = Path(result.qc_results_report).read_text()
    assert Path(result.qc_results_report).name.startswith(f"qc_results_{CHANGE}_")
    for heading in ("## Intake", "## Connectivity check", "## Initial QC", "## Kernel groups"):
        assert heading in summary
    assert "## Kernel staging" in summary
    assert fleet.instances["a-offline"].instance_id in summary


def check_the_store(fleet: Fleet) -> None:
    # The store holds each step per instance; the post flow reads the QC and the staged kernel.
    store = Store.default()
    qc = store.latest_executions(CHANGE, WORKFLOW, "initial_qc")
    assert len(qc) == 12
    rhel1 = fleet.instances["a-rhel-1"].instance_id
    report = QcReport.model_validate(qc[rhel1].parsed)
    assert report.passed and report.available_kernels == RHEL8_KERNELS
    staged = store.latest_executions(CHANGE, WORKFLOW, "stage_kernels")
    assert (staged[rhel1].parsed or {})["kernel"] == "4.18.0-553.16.1.el8_10"
    assert len(store.latest_executions(CHANGE, WORKFLOW, "final_report")) == 10


def test_twelve_instances_over_two_accounts_qc_group_stage_and_report(
    twelve: Fleet, data_dir: Path
) -> None:
    result = linux_qc_patching_prep(
        change_number=CHANGE,
        instances=twelve.targets(),
        provider=twelve.block,
        kernel_choices={
            RHEL8_GROUP: "4.18.0-553.16.1.el8_10",
            AL2_GROUP: "kernel-4.14.348-265.562.amzn2.x86_64",
        },
    )

    verdicts = check_the_qc_verdicts(twelve, result)
    check_the_kernel_groups(twelve, result)
    check_the_staging(twelve, result)
    check_the_reports(twelve, result, verdicts, data_dir)
    check_the_store(twelve)


def test_artifacts_tell_the_run(twelve: Fleet) -> None:
    state = linux_qc_patching_prep(
        change_number=CHANGE,
        instances=twelve.targets(),
        provider=twelve.block,
        steps=("initial_qc",),
        return_state=True,
    )

    by_key: dict[str, list[Any]] = {}
    for artifact in read_artifacts(flow_run_id=state.state_details.flow_run_id):
        by_key.setdefault(artifact.key or "", []).append(artifact)
    prefix = f"linux-qc-prep-{CHANGE.lower()}"
    assert {f"{prefix}-qc", f"{prefix}-kernel-groups", f"{prefix}-qc-results"} <= set(by_key)
    # Shown while the run could wait for a kernel choice, then refreshed: one card per kind.
    assert all(len(by_key[k]) == 1 for k in (f"{prefix}-qc", f"{prefix}-kernel-groups"))
    qc_columns = list(json.loads(by_key[f"{prefix}-qc"][0].data)[0])
    assert qc_columns[:4] == ["instance", "name", "verdict", "reasons"]
    assert any(a.data == 100.0 for a in by_key[f"{prefix}-progress"])
    assert any(a.data == 100.0 for a in by_key[f"{prefix}-qc-progress"])
    # Only the QC step ran: nothing was staged, nothing collected, no final report file.
    assert not [c for c in twelve.world.commands if "stage_kernel" in c.comment]
    assert all(twelve.sent(k) <= 1 for k in twelve.instances)


def test_staging_alone_uses_the_recorded_qc(two_rhel: Fleet) -> None:
    linux_qc_patching_prep(
        change_number=CHANGE,
        instances=two_rhel.targets(),
        provider=two_rhel.block,
        steps=["initial_qc"],
    )
    result = linux_qc_patching_prep(
        change_number=CHANGE,
        instances=two_rhel.targets(),
        provider=two_rhel.block,
        kernel_choices="4.18.0-553.45.1.el8_10",
        steps=["stage_kernels"],
    )

    assert [g.name for g in result.groups] == [RHEL8_GROUP]
    assert result.final_report is None
    for key in ("r1", "r2"):
        assert patchme_kernel(two_rhel, key) == "4.18.0-553.45.1.el8_10"
        assert two_rhel.sent(key) == 2  # QC in the first run, staging in the second


def test_staging_without_any_recorded_qc_says_so_and_sends_nothing(two_rhel: Fleet) -> None:
    with pytest.raises(PrepParameterError, match="no initial QC is recorded for change") as no_qc:
        linux_qc_patching_prep(
            change_number=CHANGE,
            instances=two_rhel.targets(),
            provider=two_rhel.block,
            kernel_choices="4.18.0-553.45.1.el8_10",
            steps=["stage_kernels"],
        )

    assert "initial_qc" in str(no_qc.value) and "nothing was sent" in str(no_qc.value)
    assert "no groups passed QC" not in str(no_qc.value)
    assert two_rhel.sent("r1") == 0 and two_rhel.sent("r2") == 0


def test_a_host_whose_repositories_do_not_offer_the_choice_is_not_offered(
    ssm_world: SsmWorld,
) -> None:
    fleet = make_fleet(
        ssm_world,
        {
            "full": (HOME_ACCOUNT, rhel8("full")),
            "short": (HOME_ACCOUNT, rhel8("short", RHEL8_LISTING_SHORT)),
        },
    )

    result = linux_qc_patching_prep(
        change_number=CHANGE,
        instances=fleet.targets(),
        provider=fleet.block,
        kernel_choices="4.18.0-553.45.1.el8_10",
        steps=["initial_qc", "stage_kernels"],
    )

    assert patchme_kernel(fleet, "full") == "4.18.0-553.45.1.el8_10"
    assert patchme_kernel(fleet, "short") is None
    assert fleet.sent("short") == 1  # the QC only: staging was never sent there
    by_key = {fleet.key_of(s.instance_id): s for s in result.staged}
    assert by_key["short"].outcome == "not_offered"
    assert by_key["short"].offered_kernels == ["4.18.0-553.8.1.el8_10", "4.18.0-553.16.1.el8_10"]
    # The store says why, so the patch window and post leave it out with the reason.
    short_id = fleet.instances["short"].instance_id
    [record] = [
        e
        for e in Store.default().latest_executions(CHANGE, WORKFLOW, "stage_kernels").values()
        if e.instance_id == short_id
    ]
    assert record.status.value == "skipped" and "not_offered" in (record.error or "")


def test_kernel_outside_the_group_list_is_refused_and_nothing_staged(
    two_rhel: Fleet, data_dir: Path
) -> None:
    with pytest.raises(KernelChoiceError, match="not in the list of group") as refused:
        linux_qc_patching_prep(
            change_number=CHANGE,
            instances=two_rhel.targets(),
            provider=two_rhel.block,
            kernel_choices={RHEL8_GROUP: "4.18.0-553.99.1.el8_10"},
        )

    message = str(refused.value)
    assert "4.18.0-553.45.1.el8_10" in message  # the options are listed
    for key in ("r1", "r2"):
        assert two_rhel.sent(key) == 1  # the QC only
        assert patchme_kernel(two_rhel, key) is None
    reports = list((data_dir / "reports").glob(f"qc_results_{CHANGE}_*.md"))
    assert len(reports) == 1 and "Refused, nothing staged" in reports[0].read_text()


HOSTILE = ["$(touch /tmp/pwned)", "`touch /tmp/pwned`", "x;reboot", "x' || reboot '", 'x"y']


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("where", ["change_number", "kernel", "kernel_for_all", "workdir"])
def test_hostile_values_are_refused_before_anything_is_sent(
    two_rhel: Fleet, hostile: str, where: str
) -> None:
    arguments: dict[str, Any] = {
        "change_number": CHANGE,
        "instances": two_rhel.targets(),
        "provider": two_rhel.block,
    }
    if where == "change_number":
        arguments["change_number"] = f"CHG1{hostile}"
    elif where == "kernel":
        arguments["kernel_choices"] = {RHEL8_GROUP: f"4.18.0-553.45.1{hostile}"}
    elif where == "kernel_for_all":
        arguments["kernel_choices"] = f"4.18.0{hostile}"
    else:
        arguments["workdir"] = f"/root/{hostile}"

    with pytest.raises(PrepParameterError, match="nothing was sent"):
        linux_qc_patching_prep(**arguments)

    assert two_rhel.world.calls[("ssm", "SendCommand")] == 0
    assert two_rhel.world.calls[("ssm", "DescribeInstanceInformation")] == 0


def test_patcher_url_that_could_inject_is_refused(two_rhel: Fleet) -> None:
    with pytest.raises(PrepParameterError, match="patcher_url"):
        linux_qc_patching_prep(
            change_number=CHANGE,
            instances=two_rhel.targets(),
            provider=two_rhel.block,
            qc_engine="linux-patcher",
            patcher_url="https://example.com/patcher.sh;$(reboot)",
        )
    assert two_rhel.world.calls[("ssm", "SendCommand")] == 0


# --- choose_in_ui ------------------------------------------------------------------------------


def _paused_run_id(timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[WORKFLOW])),
                flow_run_filter=paused,
            )
            if runs:
                return runs[0].id
            time.sleep(0.3)
    raise AssertionError("the prep flow run never paused for the kernel choice")


def _log_line(flow_run_id: UUID, containing: str) -> str:
    """The run's first log line holding ``containing``, once its logs reached the API."""
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
        found = [entry.message for entry in logs if containing in entry.message]
        if found or time.monotonic() > deadline:
            assert found, f"no log line with {containing!r}"
            return found[0]
        time.sleep(0.5)


def test_choose_in_ui_waits_for_a_person_and_refuses_a_kernel_outside_the_list(
    two_rhel: Fleet,
) -> None:
    outcome: dict[str, Any] = {}

    def run_flow() -> None:
        try:
            outcome["result"] = linux_qc_patching_prep(
                change_number=CHANGE,
                instances=two_rhel.targets(),
                provider=two_rhel.block,
                choose_in_ui=True,
                choice_timeout_seconds=120,
            )
        except BaseException as exc:  # reported to the test thread below
            outcome["error"] = exc

    runner = threading.Thread(target=run_flow, daemon=True)
    runner.start()
    flow_run_id = _paused_run_id()

    # While the run waits, nothing is staged, and its log says how to answer.
    assert [two_rhel.sent(k) for k in ("r1", "r2")] == [1, 1]
    waiting = _log_line(flow_run_id, "waiting up to 120 s")
    assert f"cloudops resume {flow_run_id} --kernel" in waiting
    assert "press Resume" in waiting
    # the run's page in the UI (the test harness sets PREFECT_UI_URL), not a path it lacks
    assert f"/runs/flow-run/{flow_run_id} and press Resume" in waiting
    # An answer outside the group's list (or a hostile one) is refused by the form's schema,
    # and the run keeps waiting.
    for bad in ("4.18.0-553.99.1.el8_10", "4.18.0-553.45.1.el8_10$(reboot)"):
        with pytest.raises(RuntimeError, match="Cannot resume this run: Reason"):
            resume_flow_run(flow_run_id, run_input={RHEL8_GROUP: bad})
    assert _paused_run_id() == flow_run_id

    resume_flow_run(flow_run_id, run_input={RHEL8_GROUP: "4.18.0-553.8.1.el8_10"})
    runner.join(timeout=120)

    assert "error" not in outcome, outcome.get("error")
    result: PrepResult = outcome["result"]
    [decision] = result.decisions
    assert (decision.kernel, decision.source) == ("4.18.0-553.8.1.el8_10", "ui")
    for key in ("r1", "r2"):
        assert patchme_kernel(two_rhel, key) == "4.18.0-553.8.1.el8_10"


PATCHER = r"""#!/bin/bash
# A stand-in for the team's Linux Patcher: in QC mode (-q) it prints its coloured report.
[ "${1:-}" = -q ] || { echo "refusing to patch in a test" >&2; exit 9; }
G=$'\e[32m'; N=$'\e[0m'
echo "===== QC report for $(hostname) ====="
echo "(Current date): Tue May 14 10:00:00 UTC 2024"
echo "(Server running since): 2024-04-02 06:12:44"
echo "(Current running kernel version): $(uname -r)"
echo "(Is Crowdstrike running): ${G}Yes${N}"
echo "(Current Crowdstrike Version): 7.10.16303.0"
echo "(Available Kernel Updates):"
echo "kernel.x86_64  4.18.0-553.45.1.el8_10  rhel-8-for-x86_64-baseos-rpms"
echo "(Test Repositories Result): ${G}PASSED${N}"
echo "(Disk Space Check Result): ${G}PASSED${N}"
"""


def test_linux_patcher_engine_is_downloaded_run_in_qc_mode_and_read_by_the_same_parser(
    two_rhel: Fleet,
) -> None:
    for instance in two_rhel.instances.values():
        instance.write_file("/srv/patcher.sh", PATCHER)
        # curl fetches from the sandbox's /srv instead of the network, into its -o file.
        instance.fake_command(
            "curl",
            _logged(
                'while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\n'
                'cp "$CLOUDOPS_ROOT/srv/patcher.sh" "$out"'
            ),
        )

    result = linux_qc_patching_prep(
        change_number=CHANGE,
        instances=two_rhel.targets(),
        provider=two_rhel.block,
        qc_engine="linux-patcher",
        patcher_url="https://tools.example.com/linux_patcher.sh",
        kernel_choices={RHEL8_GROUP: "4.18.0-553.45.1.el8_10"},
    )

    assert [i.verdict for i in result.instances] == [QcVerdict.PASSED, QcVerdict.PASSED]
    [group] = result.groups
    assert (group.name, group.available_kernels) == (RHEL8_GROUP, ["4.18.0-553.45.1.el8_10"])
    for key in ("r1", "r2"):
        assert any(c.startswith("curl ") and "tools.example.com" in c for c in two_rhel.calls(key))
        saved = two_rhel.server_file(key, f"/root/{CHANGE}/qc_report.txt").read_text()
        assert saved.startswith(f"===== QC report for {key} =====")
        assert patchme_kernel(two_rhel, key) == "4.18.0-553.45.1.el8_10"
