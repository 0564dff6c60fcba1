"""The window's own logic without a server: sizes and budgets, the wave plan, and the verdicts
on what the preflight and install scripts print."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flows.linux_patching.prep_record import PrepRecord
from flows.linux_patching.qc_report import QcReport
from flows.linux_patching.window.budget import ErrorBudget
from flows.linux_patching.window.install import Installed, judge_install
from flows.linux_patching.window.parameters import parse_share
from flows.linux_patching.window.preflight import PreflightVerdict, judge_preflight
from flows.linux_patching.window.result import FinalStatus, WaveKind
from flows.linux_patching.window.waves import plan_waves, spread
from providers.base import ResultStatus, ScriptResult, Target

STAGED = "4.18.0-553.45.1.el8_10"
BEFORE = "4.18.0-553.5.1.el8_10.x86_64"
HOST = Target(instance_id="i-0123456789abcdef0", account_id="111111111111", region="us-east-1")
PREP = PrepRecord(
    qc_status=ResultStatus.SUCCESS,
    qc_report=QcReport(hostname="web-01", kernel=BEFORE, distro="RHEL8.10", passed=True),
    staged_kernel=STAGED,
)


# --- sizes, budgets, waves ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "total", "wave", "budget"),
    [("5", 40, 5, 5), ("25%", 26, 7, 6), ("10%", 30, 3, 3), ("12.5%", 9, 2, 1), ("0", 9, 1, 0)],
)
def test_a_count_or_a_share_is_parsed_once(text: str, total: int, wave: int, budget: int) -> None:
    share = parse_share("x", text, least=0)
    assert max(1, share.of(total, round_up=True)) == wave  # a wave is never empty
    assert share.of(total, round_up=False) == budget  # a budget never grows past what was given


@pytest.mark.parametrize("text", ["-1", "abc", "5.5", "101%", "25 %%", ""])
def test_what_is_not_a_count_or_a_share_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="max_failures"):
        parse_share("max_failures", text, least=0)


def test_the_budget_halts_past_what_was_allowed_and_a_continue_moves_the_line() -> None:
    budget = ErrorBudget(allowed=1)
    assert not budget.spent(1) and budget.spent(2)
    budget.accept(2)
    assert not budget.spent(2) and budget.spent(3)
    assert budget.describe(3) == "3 failure(s), budget 1 (continued at 2)"


def fleet(count: int, places: int) -> list[Target]:
    return [
        Target(instance_id=f"i-{n:017x}", account_id=f"{p % places + 1}" * 12, region="us-east-1")
        for n, p in zip(range(count), range(count), strict=True)
    ]


def test_waves_spread_over_places_and_plan_the_same_whatever_the_order_given() -> None:
    targets = fleet(12, places=3)
    groups = {t.instance_id: ("A" if n % 4 else "B") for n, t in enumerate(targets)}
    shuffled = random.Random(7).sample(targets, len(targets))

    waves = plan_waves(
        targets, groups, canary_per_group=1, wave_size=parse_share("w", "4", least=1)
    )
    again = plan_waves(
        shuffled, groups, canary_per_group=1, wave_size=parse_share("w", "4", least=1)
    )

    assert waves == again  # a retried run plans the very same waves
    assert [(w.kind, len(w.targets)) for w in waves] == [
        (WaveKind.CANARY, 2),
        (WaveKind.WAVE, 4),
        (WaveKind.WAVE, 4),
        (WaveKind.WAVE, 2),
    ]
    assert sorted(groups[i] for i in waves[0].instance_ids) == ["A", "B"]
    dealt = spread(targets)
    assert [t.account_id for t in dealt[:3]] == ["111111111111", "222222222222", "333333333333"]
    assert [w.step for w in waves] == ["wave-1", "wave-2", "wave-3", "wave-4"]


def test_each_wave_takes_its_share_of_every_place_small_places_included() -> None:
    sizes = {"1": 8, "2": 4, "3": 2}  # instances per account
    targets = [
        Target(instance_id=f"i-{account}{n:016x}", account_id=account * 12, region="us-east-1")
        for account, count in sizes.items()
        for n in range(count)
    ]

    waves = plan_waves(targets, {}, canary_per_group=0, wave_size=parse_share("w", "50%", least=1))

    # Dealt one by one, the small account would be used up in wave 1 and wave 2 would be all
    # account 1; in proportion, each half of the change holds half of every account.
    for wave in waves:
        counts = Counter(t.account_id[0] for t in wave.targets)
        assert counts == {"1": 4, "2": 2, "3": 1}


def test_without_a_canary_the_waves_start_at_once() -> None:
    waves = plan_waves(
        fleet(5, places=1), {}, canary_per_group=0, wave_size=parse_share("w", "50%", least=1)
    )
    assert [(w.kind, len(w.targets)) for w in waves] == [(WaveKind.WAVE, 3), (WaveKind.WAVE, 2)]


# --- preflight ------------------------------------------------------------------------------


def preflight_output(**values: str) -> str:
    facts = {
        "PREFLIGHT_VERSION": "1",
        "HOSTNAME": "web-01",
        "KERNEL_RUNNING": BEFORE,
        "BOOT_ID": "b1",
        "PATCHME": "present",
        "PATCHME_KERNEL": STAGED,
        "PKG_MANAGER": "dnf",
        "TARGET_INSTALLED": "no",
        "TARGET_OFFERED": "yes",
        "BOOT_FREE_KB": "512000",
        "BOOT_NEEDED_KB": "102400",
        "PKG_LOCK": "free",
        "FALCON_KERNEL_CHECK": "supported",
        "WINDOW_REBOOTS": "0",
        **values,
    }
    block = "\n".join(f"{k}={v}" for k, v in facts.items())
    return (
        "===== Patch window preflight for web-01 =====\n"
        f"----- CLOUDOPS WINDOW PREFLIGHT BEGIN -----\n{block}\n"
        "----- CLOUDOPS WINDOW PREFLIGHT END -----\n"
    )


def preflight(stdout: str, status: ResultStatus = ResultStatus.SUCCESS, **options: object):
    result = ScriptResult(instance_id=HOST.instance_id, status=status, stdout=stdout, exit_code=0)
    arguments: dict = {
        "group": "RHEL8.10 - Kernel 4.18.0-553",
        "change_number": "CHG1",
        "workdir": "/root",
        "not_staged": None,
        "accept_newer_kernel": False,
        **options,
    }
    return judge_preflight(HOST, result, PREP, **arguments)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"PATCHME": "missing"}, "patchme.sh is missing at /root/CHG1/patchme.sh"),
        ({"PATCHME_KERNEL": "4.18.0-553.16.1.el8_10"}, "but prep staged 4.18.0-553.45.1"),
        ({"TARGET_OFFERED": "no"}, "no longer offered by this server's repositories"),
        ({"BOOT_FREE_KB": "20480"}, "/boot has 20 MB free, one more kernel needs about 100 MB"),
        ({"PKG_LOCK": "held", "PKG_LOCK_DETAIL": "/var/run/yum.pid names process 42"}, "42"),
        ({"FALCON_KERNEL_CHECK": "unsupported"}, "does not support 4.18.0-553.45.1.el8_10"),
        ({"WINDOW_REBOOTS": "1"}, "already rebooted it once"),
        ({"KERNEL_RUNNING": "4.18.0-553.50.1.el8_10.x86_64"}, "newer than staged"),
    ],
)
def test_every_reason_to_refuse_is_named(values: dict[str, str], reason: str) -> None:
    checked = preflight(preflight_output(**values))
    assert checked.verdict is PreflightVerdict.REFUSED
    assert reason in checked.reasons[0]


def test_ready_already_patched_and_what_cannot_be_told() -> None:
    ready = preflight(preflight_output(FALCON_KERNEL_CHECK="absent", PKG_LOCK="unknown"))
    already = preflight(preflight_output(KERNEL_RUNNING=STAGED + ".x86_64"))
    newer = preflight(
        preflight_output(KERNEL_RUNNING="4.18.0-553.50.1.el8_10.x86_64"), accept_newer_kernel=True
    )
    offline = preflight("", ResultStatus.OFFLINE)
    unstaged = preflight(preflight_output(), not_staged="prep staged no kernel on it: x")

    assert ready.verdict is PreflightVerdict.READY and ready.reasons == []
    assert any("no falcon-kernel-check here" in n for n in ready.notes)
    assert already.verdict is PreflightVerdict.ALREADY_PATCHED
    assert newer.verdict is PreflightVerdict.ALREADY_PATCHED
    assert "accepted (accept_newer_kernel)" in newer.notes[0]
    assert offline.verdict is PreflightVerdict.REFUSED and "not reachable" in offline.reasons[0]
    assert unstaged.reasons == ["prep staged no kernel on it: x"]


# --- install and back online ---------------------------------------------------------------


def install_output(**values: str) -> str:
    facts = {
        "INSTALL_VERSION": "1",
        "STATE": "booted_target",
        "TARGET": STAGED,
        "KERNEL_BEFORE": BEFORE,
        "KERNEL_RUNNING": STAGED + ".x86_64",
        "BOOT_ID_BEFORE": "b1",
        "BOOT_ID": "b2",
        "REBOOTS": "1",
        **values,
    }
    block = "\n".join(f"{k}={v}" for k, v in facts.items())
    return (
        f"----- CLOUDOPS WINDOW INSTALL BEGIN -----\n{block}\n"
        "----- CLOUDOPS WINDOW INSTALL END -----\n"
    )


def install(stdout: str, status: ResultStatus = ResultStatus.SUCCESS, **options: object):
    result = ScriptResult(instance_id=HOST.instance_id, status=status, stdout=stdout, exit_code=0)
    arguments: dict = {"accept_newer_kernel": False, "agent_online": None, **options}
    return judge_install(result, STAGED, reboot_timeout_seconds=1200, **arguments)


def test_back_on_the_target_with_a_new_boot_id_is_back() -> None:
    judged = install(install_output())
    assert judged.installed is Installed.BACK and judged.failure is None


@pytest.mark.parametrize(
    ("stdout", "status", "options", "failure", "reason"),
    [
        (
            install_output(STATE="booted_other", KERNEL_RUNNING=BEFORE),
            ResultStatus.FAILED,
            {},
            FinalStatus.WRONG_KERNEL,
            f"booted {BEFORE} instead of {STAGED}",
        ),
        (
            install_output(STATE="booted_other", KERNEL_RUNNING="4.18.0-553.50.1.el8_10.x86_64"),
            ResultStatus.FAILED,
            {},
            FinalStatus.WRONG_KERNEL,
            "newer than staged (4.18.0-553.50.1.el8_10 > 4.18.0-553.45.1.el8_10)",
        ),
        (
            install_output(STATE="install_failed", REASON="dnf could not install kernel-x"),
            ResultStatus.FAILED,
            {},
            FinalStatus.INSTALL_FAILED,
            "dnf could not install kernel-x",
        ),
        (
            "",
            ResultStatus.TIMED_OUT,
            {"agent_online": False},
            FinalStatus.REBOOT_TIMED_OUT,
            "did not come back within 1200 s",
        ),
        (
            "",
            ResultStatus.TIMED_OUT,
            {"agent_online": True},
            FinalStatus.INSTALL_FAILED,
            "did not finish in time",
        ),
        (
            install_output(BOOT_ID="b1"),
            ResultStatus.SUCCESS,
            {},
            FinalStatus.INSTALL_FAILED,
            "no new boot id",
        ),
        (
            install_output(TARGET="4.18.0-553.16.1.el8_10"),
            ResultStatus.SUCCESS,
            {},
            FinalStatus.INSTALL_FAILED,
            "but prep staged",
        ),
        ("", ResultStatus.UNDELIVERABLE, {}, FinalStatus.INSTALL_FAILED, "was not run"),
    ],
)
def test_what_went_wrong_is_named(
    stdout: str, status: ResultStatus, options: dict, failure: FinalStatus, reason: str
) -> None:
    judged = install(stdout, status, **options)
    assert judged.installed is Installed.FAILED and judged.failure is failure
    assert reason in judged.reasons[0]


def test_a_newer_kernel_is_accepted_when_asked_and_the_target_already_running_is_left() -> None:
    newer = install(
        install_output(STATE="booted_other", KERNEL_RUNNING="4.18.0-553.50.1.el8_10.x86_64"),
        ResultStatus.FAILED,
        accept_newer_kernel=True,
    )
    already = install(install_output(STATE="already_running_target", BOOT_ID="b1"))

    assert newer.installed is Installed.BACK and "accepted" in newer.notes[0]
    assert already.installed is Installed.ALREADY
