"""What sft-fixer decides per instance from its detection, and how it words the verdict: the
plain functions behind the flow, on states parsed from detection output."""

from __future__ import annotations

import pytest

from flows.parsers import SftActionOutcome, SftActionResult, parse_sft_detection
from flows.sft.decide import NO_WINDOWS_INSTALLER, Judgement, decide, judge_fix
from flows.sft.parameters import SftAction
from flows.sft.result import SftVerdict
from flows.sft.token import REDACTED, redact
from providers.base import Platform, ResultStatus, ScriptResult, Target

LINUX = Target(instance_id="i-0123456789abcdef0", account_id="111111111111", region="us-east-1")
WINDOWS = LINUX.model_copy(update={"platform": Platform.WINDOWS})


def _detection(**facts: str) -> str:
    markers = {
        "SFT_INSTALLED": "yes",
        "SFT_STATUS": "running",
        "SFT_ENROLLMENT_TOKEN": "missing",
        "SFT_DEVICE_TOKEN": "exists",
        "SFT_CONFIG": "exists",
        **facts,
    }
    return "\n".join(f"{k}={v}" for k, v in markers.items())


HEALTHY = _detection()
MISSING = _detection(SFT_INSTALLED="no", SFT_STATUS="not_installed", SFT_DEVICE_TOKEN="missing")
STOPPED = _detection(SFT_STATUS="stopped")
UNENROLLED = _detection(SFT_ENROLLMENT_TOKEN="exists", SFT_DEVICE_TOKEN="missing")


def _ran(stdout: str, status: ResultStatus = ResultStatus.SUCCESS) -> ScriptResult:
    return ScriptResult(instance_id=LINUX.instance_id, status=status, stdout=stdout, exit_code=0)


def _decide(action: SftAction, output: str, target: Target = LINUX) -> SftAction | Judgement:
    return decide(action, target, _ran(output), parse_sft_detection(output, target.platform))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (MISSING, SftAction.INSTALL),
        (STOPPED, SftAction.RESET),
        # An enrolled agent deletes its enrollment token: only the device token says enrolled.
        (UNENROLLED, SftAction.RESET),
        (HEALTHY, Judgement(SftVerdict.ALREADY_HEALTHY, "agent installed, running and enrolled")),
    ],
)
def test_auto_acts_on_what_detection_found(output: str, expected: object) -> None:
    assert _decide(SftAction.AUTO, output) == expected


def test_auto_changes_nothing_when_detection_did_not_say() -> None:
    decision = _decide(SftAction.AUTO, "sftd: permission denied\n")

    assert isinstance(decision, Judgement)
    assert decision.verdict is SftVerdict.FAILED
    assert decision.reason.startswith("could not tell the agent's state (detection failed:")
    assert decision.reason.endswith("nothing was changed")


def test_windows_without_the_agent_is_skipped_for_auto_and_install() -> None:
    for action in (SftAction.AUTO, SftAction.INSTALL):
        assert _decide(action, MISSING, WINDOWS) == Judgement(
            SftVerdict.SKIPPED, NO_WINDOWS_INSTALLER
        )
    assert _decide(SftAction.AUTO, STOPPED, WINDOWS) is SftAction.RESET


def test_explicit_actions_run_even_on_a_healthy_agent_but_reset_needs_one_installed() -> None:
    assert _decide(SftAction.INSTALL, HEALTHY) is SftAction.INSTALL
    assert _decide(SftAction.RESET, HEALTHY) is SftAction.RESET

    refused = _decide(SftAction.RESET, MISSING)

    assert isinstance(refused, Judgement) and refused.verdict is SftVerdict.FAILED
    assert "run action=auto or install" in refused.reason


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (ResultStatus.OFFLINE, SftVerdict.NOT_REACHABLE),
        (ResultStatus.NOT_MANAGED, SftVerdict.NOT_REACHABLE),
        (ResultStatus.UNDELIVERABLE, SftVerdict.NOT_REACHABLE),
        (ResultStatus.SKIPPED, SftVerdict.SKIPPED),
        (ResultStatus.TIMED_OUT, SftVerdict.FAILED),
        (ResultStatus.ERROR, SftVerdict.FAILED),
    ],
)
def test_an_instance_detection_never_reached_gets_no_action(
    status: ResultStatus, verdict: SftVerdict
) -> None:
    result = ScriptResult.without_running(LINUX, status, "what the provider said")

    decision = decide(SftAction.AUTO, LINUX, result, parse_sft_detection(""))

    assert isinstance(decision, Judgement)
    assert decision.verdict is verdict
    assert "what the provider said" in decision.reason


def test_detect_only_reports_what_auto_would_do() -> None:
    assert _decide(SftAction.DETECT, STOPPED) == Judgement(
        SftVerdict.UNHEALTHY, "agent installed but service stopped; auto would reset"
    )
    assert _decide(SftAction.DETECT, HEALTHY).verdict is SftVerdict.ALREADY_HEALTHY


def test_a_failed_fix_is_explained_by_the_second_detection_then_the_script() -> None:
    after = parse_sft_detection(STOPPED)
    said = SftActionResult(
        outcome=SftActionOutcome.FAILED,
        reason="service_start_failed",
        message="service_start_failed: the agent service did not start; read its log",
    )

    judged = judge_fix(SftAction.RESET, said, after)

    assert judged.verdict is SftVerdict.FAILED
    assert judged.reason == (
        "after reset: agent installed but service stopped; the reset script said: "
        "service_start_failed: the agent service did not start; read its log"
    )
    assert judge_fix(SftAction.INSTALL, None, parse_sft_detection(HEALTHY)).verdict is (
        SftVerdict.FIXED
    )


def test_redact_removes_every_copy_of_the_token_from_output_and_error() -> None:
    token = "tok-0123456789abcdef-XYZ"
    leaky = ScriptResult(
        instance_id=LINUX.instance_id,
        status=ResultStatus.FAILED,
        stdout=f"{token}\nagain {token}",
        stderr=f"stderr {token}",
        error=f"error {token}",
    )

    clean = redact(leaky, token)

    assert clean.stdout == f"{REDACTED}\nagain {REDACTED}"
    assert clean.stderr == f"stderr {REDACTED}" and clean.error == f"error {REDACTED}"
    assert redact(leaky, None) == leaky
