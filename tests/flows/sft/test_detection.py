"""parse_sft_detection and parse_sft_action_result on real and realistic script output.

The Linux samples were printed by ``flows/scripts/linux/sft_detect.sh`` on the fake hosts of
``tests/flows/scripts/test_sft_scripts.py``; the Windows samples follow ``sft_detect.ps1`` (with the
CRLF line ends SSM returns from Windows), since PowerShell cannot run on this machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.parsers import (
    SftActionOutcome,
    SftNeed,
    SftState,
    SftStatus,
    parse_sft_action_result,
    parse_sft_detection,
)
from providers.base import Platform

SAMPLES = Path(__file__).parent / "samples"


def _sample(name: str) -> str:
    # Bytes, not read_text(): universal newlines would hide the Windows CRLF line ends.
    return (SAMPLES / name).read_bytes().decode("utf-8")


def test_rhel_installed_and_running_is_healthy() -> None:
    state = parse_sft_detection(_sample("rhel_installed_running.txt"))

    assert state == SftState(
        platform=Platform.LINUX,
        installed=True,
        agent_type="rpm",
        status=SftStatus.RUNNING,
        enrollment_token_present=False,
        device_token_present=True,
        config_present=True,
        linux_distro="rhel 8.10",
    )
    assert state.healthy
    assert state.needs is SftNeed.NOTHING
    assert state.summary == "agent installed, running and enrolled"


def test_rhel_installed_but_stopped_needs_a_reset() -> None:
    state = parse_sft_detection(_sample("rhel_installed_stopped.txt"))

    assert state.installed is True
    assert state.status is SftStatus.STOPPED
    assert state.device_token_present is True
    assert not state.healthy
    assert state.needs is SftNeed.RESET
    assert state.summary == "agent installed but service stopped"
    assert state.error is None


@pytest.mark.parametrize(
    ("sample", "distro"),
    [("rhel_not_installed.txt", "rhel 8.10"), ("ubuntu_not_installed.txt", "ubuntu 22.04")],
)
def test_not_installed_needs_an_install(sample: str, distro: str) -> None:
    state = parse_sft_detection(_sample(sample))

    assert state.installed is False
    assert state.agent_type is None
    assert state.status is SftStatus.NOT_INSTALLED
    assert state.linux_distro == distro
    assert state.platform is Platform.LINUX
    assert state.needs is SftNeed.INSTALL
    assert state.summary == "agent not installed"
    assert state.error is None


def test_running_but_not_enrolled_needs_a_reset() -> None:
    state = parse_sft_detection(_sample("ubuntu_running_not_enrolled.txt"))

    assert state.status is SftStatus.RUNNING
    assert state.enrollment_token_present is True
    assert state.device_token_present is False
    assert state.enrolled is False
    assert state.needs is SftNeed.RESET
    assert "not enrolled (enrollment token present, no device token)" in state.summary


def test_windows_running_and_enrolled() -> None:
    state = parse_sft_detection(_sample("windows_running.txt"))

    assert state.platform is Platform.WINDOWS
    assert state.agent_type == "windows-service"
    assert state.status is SftStatus.RUNNING
    assert state.windows_version == "Microsoft Windows Server 2019 Datacenter 10.0.17763"
    assert state.linux_distro is None
    assert state.healthy
    assert state.needs is SftNeed.NOTHING


def test_windows_stopped_and_not_enrolled() -> None:
    state = parse_sft_detection(_sample("windows_stopped_not_enrolled.txt"))

    assert state.platform is Platform.WINDOWS
    assert state.status is SftStatus.STOPPED
    assert state.config_present is False
    assert state.needs is SftNeed.RESET
    assert state.summary == (
        "agent installed but service stopped, "
        "not enrolled (enrollment token present, no device token)"
    )


def test_windows_not_installed() -> None:
    state = parse_sft_detection(_sample("windows_not_installed.txt"))

    assert state.platform is Platform.WINDOWS
    assert state.installed is False
    assert state.needs is SftNeed.INSTALL


def test_colour_codes_and_the_ssm_error_section_are_ignored() -> None:
    state = parse_sft_detection(_sample("amzn_stopped_with_colours_and_stderr.txt"))

    assert state.installed is True
    assert state.status is SftStatus.STOPPED
    assert state.linux_distro == "amzn 2023"
    assert state.summary == (
        "agent installed but service stopped, "
        "not enrolled (no enrollment token, no device token)"
    )
    assert state.error is None


def test_garbage_gives_an_unknown_state_with_an_error() -> None:
    state = parse_sft_detection(_sample("garbage_ssm_error.txt"), platform=Platform.LINUX)

    assert state.installed is None
    assert state.status is SftStatus.UNKNOWN
    assert state.device_token_present is None
    assert state.platform is Platform.LINUX
    assert state.error is not None and "detection markers" in state.error
    assert not state.healthy
    assert state.needs is SftNeed.UNKNOWN
    assert state.summary.startswith("detection failed: ")


@pytest.mark.parametrize("text", ["", None, "   \n\n"])
def test_empty_output_is_reported_not_raised(text: str | None) -> None:
    state = parse_sft_detection(text)

    assert state.error is not None
    assert state.needs is SftNeed.UNKNOWN


def test_output_cut_short_names_the_missing_marker() -> None:
    state = parse_sft_detection(_sample("truncated_after_type.txt"))

    assert state.installed is True
    assert state.status is SftStatus.UNKNOWN
    assert state.error == "SFT_STATUS was missing from the output"
    assert state.needs is SftNeed.UNKNOWN
    assert "service state unknown" in state.summary


def test_an_unrecognised_value_never_echoes_what_the_host_printed() -> None:
    state = parse_sft_detection(
        "SFT_INSTALLED=yes\nSFT_STATUS=running\nSFT_ENROLLMENT_TOKEN=eyJhbGciOiJIUzI1NiJ9.secret\n"
        "SFT_DEVICE_TOKEN=exists\n"
    )

    assert state.enrollment_token_present is None
    assert state.error is not None and "SFT_ENROLLMENT_TOKEN" in state.error
    assert "secret" not in state.model_dump_json()
    assert state.healthy  # the enrollment token is not needed once the host is enrolled


def test_contradicting_markers_are_reported() -> None:
    state = parse_sft_detection("SFT_INSTALLED=yes\nSFT_STATUS=not_installed\n")

    assert state.status is SftStatus.UNKNOWN
    assert state.error is not None
    assert "SFT_INSTALLED says yes but SFT_STATUS says not_installed" in state.error


def test_the_last_value_of_a_marker_wins() -> None:
    state = parse_sft_detection("SFT_INSTALLED=yes\nSFT_STATUS=stopped\nSFT_STATUS=running\n")

    assert state.status is SftStatus.RUNNING


def test_derived_fields_are_part_of_the_dump() -> None:
    dumped = parse_sft_detection(_sample("rhel_installed_stopped.txt")).model_dump(mode="json")

    assert dumped["needs"] == "reset"
    assert dumped["healthy"] is False
    assert dumped["enrolled"] is True


_MARKER_KEYS = st.sampled_from(
    [
        "SFT_PLATFORM",
        "SFT_INSTALLED",
        "SFT_TYPE",
        "SFT_STATUS",
        "SFT_ENROLLMENT_TOKEN",
        "SFT_DEVICE_TOKEN",
        "SFT_CONFIG",
        "LINUX_DISTRO",
        "WINDOWS_VERSION",
    ]
)
_MARKER_VALUES = st.one_of(
    st.sampled_from(["yes", "no", "running", "stopped", "not_installed", "exists", "missing"]),
    st.text(max_size=30),
)
_MARKER_LINES = st.lists(
    st.tuples(_MARKER_KEYS, _MARKER_VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=12
)


@given(st.one_of(st.text(), _MARKER_LINES.map("\n".join)))
def test_parse_never_raises(text: str) -> None:
    state = parse_sft_detection(text)

    assert isinstance(state, SftState)
    assert state.needs in set(SftNeed)
    if state.needs is SftNeed.NOTHING:
        assert state.healthy
    if state.installed is None:
        assert state.needs is SftNeed.UNKNOWN


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=60))
def test_a_token_printed_by_mistake_never_reaches_the_state(token: str) -> None:
    state = parse_sft_detection(f"SFT_INSTALLED=yes\nSFT_ENROLLMENT_TOKEN={token}\n")

    assert token not in state.model_dump_json()


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        (
            "sft_install: rhel (rpm), AccessAddress 10.0.0.5\nSFT_ACTION_RESULT=installed",
            "installed",
        ),
        ("sft_reset: stopping sftd\r\nSFT_ACTION_RESULT=reset\r\n", "reset"),
    ],
)
def test_action_result_success(text: str, outcome: str) -> None:
    result = parse_sft_action_result(text)

    assert result.outcome == outcome
    assert result.succeeded
    assert result.reason is None


def test_action_result_failure_says_what_to_do() -> None:
    result = parse_sft_action_result("SFT_ACTION_RESULT=failed:missing_enrollment_token\n")

    assert result.outcome is SftActionOutcome.FAILED
    assert not result.succeeded
    assert result.reason == "missing_enrollment_token"
    assert result.message is not None and "Prefect Secret block" in result.message


def test_action_result_failure_with_an_unknown_reason_still_reads() -> None:
    result = parse_sft_action_result("SFT_ACTION_RESULT=failed:disk_on_fire")

    assert result.reason == "disk_on_fire"
    assert result.message == "disk_on_fire: read the instance's output and errors"


@pytest.mark.parametrize("text", ["", None, "Killed\n", "SFT_ACTION_RESULT=maybe\n"])
def test_action_result_without_a_result_line_is_unknown(text: str | None) -> None:
    result = parse_sft_action_result(text)

    assert result.outcome is SftActionOutcome.UNKNOWN
    assert not result.succeeded
    assert result.message
