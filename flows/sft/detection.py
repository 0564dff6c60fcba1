"""Read what the ScaleFT / Okta ASA agent scripts print into typed states.

``flows/scripts/linux/sft_detect.sh`` and ``flows/scripts/windows/sft_detect.ps1`` print one
``KEY=value`` marker per fact (``SFT_INSTALLED``, ``SFT_STATUS``, ``SFT_DEVICE_TOKEN``, ...);
:func:`parse_sft_detection` turns them into an :class:`SftState` that says whether the agent is
healthy and what the ``auto`` action needs to do. The install and reset scripts end with
``SFT_ACTION_RESULT=installed|reset|failed:<reason>``, read by :func:`parse_sft_action_result`.

Neither parser raises: output from a host is data, and a host that printed garbage is reported
as a state with an ``error`` a person can act on.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from flows.common.text import clean_output
from providers.base import Platform

# Real output may carry colour codes and Windows line ends.
_MARKER = re.compile(
    r"^\s*(?P<key>SFT_[A-Z_]+|LINUX_DISTRO|WINDOWS_VERSION)\s*=\s*(?P<value>.*?)\s*$"
)
_REQUIRED = ("SFT_INSTALLED", "SFT_STATUS")
_FACTS = (
    "SFT_INSTALLED",
    "SFT_TYPE",
    "SFT_STATUS",
    "SFT_ENROLLMENT_TOKEN",
    "SFT_DEVICE_TOKEN",
    "SFT_CONFIG",
)

_YES = {"yes", "true", "1", "installed", "exists", "present"}
_NO = {"no", "false", "0", "not_installed", "missing", "absent"}


class SftStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    NOT_INSTALLED = "not_installed"
    UNKNOWN = "unknown"


_STATUS_WORDS = {
    "running": SftStatus.RUNNING,
    "active": SftStatus.RUNNING,
    "stopped": SftStatus.STOPPED,
    "inactive": SftStatus.STOPPED,
    "failed": SftStatus.STOPPED,
    "dead": SftStatus.STOPPED,
    "not_installed": SftStatus.NOT_INSTALLED,
    "not installed": SftStatus.NOT_INSTALLED,
    "unknown": SftStatus.UNKNOWN,
}


class SftNeed(StrEnum):
    """What the ``auto`` action does for a detected state."""

    INSTALL = "install"
    RESET = "reset"
    NOTHING = "nothing"
    UNKNOWN = "unknown"  # detection failed or is incomplete: act on nothing, report it


class SftState(BaseModel):
    """The agent as one detection run saw it. ``None`` means the output did not say."""

    model_config = ConfigDict(frozen=True)

    platform: Platform | None = None
    installed: bool | None = None
    agent_type: str | None = None
    status: SftStatus = SftStatus.UNKNOWN
    enrollment_token_present: bool | None = None
    device_token_present: bool | None = None
    config_present: bool | None = None
    linux_distro: str | None = None
    hostname: str | None = None
    windows_version: str | None = None
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def enrolled(self) -> bool | None:
        """The agent holds a device token, which it receives when its enrollment succeeds."""
        return self.device_token_present

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy(self) -> bool:
        """Installed, running and enrolled.

        The enrollment token is not required: the vendor documents that the agent deletes
        ``enrollment.token`` once it has enrolled, so a healthy host usually has none.
        """
        return self.installed is True and self.status is SftStatus.RUNNING and bool(self.enrolled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs(self) -> SftNeed:
        """The ``auto`` rule: install when missing; reset when installed but stopped or not
        enrolled (no device token); nothing when healthy; unknown when detection did not say."""
        if self.installed is False:
            return SftNeed.INSTALL
        if self.installed is None:
            return SftNeed.UNKNOWN
        if self.status is SftStatus.STOPPED or self.device_token_present is False:
            return SftNeed.RESET
        if self.healthy:
            return SftNeed.NOTHING
        return SftNeed.UNKNOWN

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """One line for a report: what was found and why the ``auto`` action does what it does."""
        if self.error and self.installed is None:
            return f"detection failed: {self.error}"
        if self.installed is False:
            return "agent not installed"
        if self.healthy:
            return "agent installed, running and enrolled"
        problems: list[str] = []
        if self.status is SftStatus.STOPPED:
            problems.append("service stopped")
        elif self.status is not SftStatus.RUNNING:
            problems.append("service state unknown")
        if self.device_token_present is False:
            if self.enrollment_token_present:
                problems.append("not enrolled (enrollment token present, no device token)")
            else:
                problems.append("not enrolled (no enrollment token, no device token)")
        elif self.device_token_present is None:
            problems.append("enrollment state unknown")
        return "agent installed but " + ", ".join(problems)


def _markers(text: str) -> dict[str, str]:
    """The last value of each marker: a marker printed twice was corrected by the script."""
    found: dict[str, str] = {}
    for raw in clean_output(text).splitlines():
        match = _MARKER.match(raw)
        if match:
            found[match["key"]] = match["value"].strip("\"'")
    return found


def _yes_no(markers: dict[str, str], key: str, problems: list[str]) -> bool | None:
    value = markers.get(key)
    if value is None:
        return None
    word = value.lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    # The value is not quoted back: whatever a host printed there might be a secret.
    problems.append(f"{key} has an unrecognised value (expected yes/no or exists/missing)")
    return None


def _platform(markers: dict[str, str], default: Platform | None) -> Platform | None:
    named = markers.get("SFT_PLATFORM", "").lower()
    if named in {p.value for p in Platform}:
        return Platform(named)
    if "WINDOWS_VERSION" in markers:
        return Platform.WINDOWS
    if "LINUX_DISTRO" in markers:
        return Platform.LINUX
    return default


def parse_sft_detection(text: str | None, platform: Platform | None = None) -> SftState:
    """The agent's state from the output of ``sft_detect.sh`` or ``sft_detect.ps1``.

    ``platform`` is used only when the output does not name its own. Never raises: output with
    no detection markers gives a state whose fields are unknown and whose ``error`` says so.
    """
    markers = _markers(text if isinstance(text, str) else "")
    if not any(key in markers for key in _FACTS):
        return SftState(
            platform=platform,
            error=(
                "the SFT detection markers (SFT_INSTALLED, SFT_STATUS, ...) were missing from "
                "the output: the detection script did not run to its end; read the instance's "
                "output and errors, then run the detection again"
            ),
        )

    problems = [f"{key} was missing from the output" for key in _REQUIRED if key not in markers]
    installed = _yes_no(markers, "SFT_INSTALLED", problems)
    status = SftStatus.UNKNOWN
    if "SFT_STATUS" in markers:
        word = markers["SFT_STATUS"].lower()
        if word in _STATUS_WORDS:
            status = _STATUS_WORDS[word]
        else:
            problems.append(f"SFT_STATUS has an unrecognised value {markers['SFT_STATUS'][:40]!r}")
    if installed is None and status is SftStatus.NOT_INSTALLED:
        installed = False
    if installed is False:
        status = SftStatus.NOT_INSTALLED
    elif installed is True and status is SftStatus.NOT_INSTALLED:
        problems.append("SFT_INSTALLED says yes but SFT_STATUS says not_installed")
        status = SftStatus.UNKNOWN

    agent_type = markers.get("SFT_TYPE") or None
    return SftState(
        platform=_platform(markers, platform),
        installed=installed,
        agent_type=None if agent_type in {None, "none"} else agent_type,
        status=status,
        enrollment_token_present=_yes_no(markers, "SFT_ENROLLMENT_TOKEN", problems),
        device_token_present=_yes_no(markers, "SFT_DEVICE_TOKEN", problems),
        config_present=_yes_no(markers, "SFT_CONFIG", problems),
        linux_distro=markers.get("LINUX_DISTRO") or None,
        windows_version=markers.get("WINDOWS_VERSION") or None,
        hostname=markers.get("SFT_HOSTNAME") or None,
        error="; ".join(problems) or None,
    )


class SftActionOutcome(StrEnum):
    INSTALLED = "installed"
    RESET = "reset"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the script stopped before its result line


# What a person does about each reason the install and reset scripts can give.
_REASON_ADVICE = {
    "missing_enrollment_token": "the script was told no place to read the enrollment token "
    "from, or the token there is empty; save the token again (its Prefect Secret block, or "
    "the Parameter Store parameter) and run through the flow",
    "token_unreadable": "the instance could not read the enrollment token where the flow put "
    "it: its instance profile needs ssm:GetParameter on the parameter and kms:Decrypt on its "
    "key (SECURITY.md)",
    "no_aws_cli": "the instance has no AWS CLI to read the enrollment token with; install it",
    "invalid_enrollment_token": "the enrollment token contains spaces or line breaks; copy it "
    "again from the ASA project's Enrollment tab",
    "invalid_parameter": "a repository or key URL is not a plain https:// URL; fix the parameter",
    "no_systemd": "the host has no systemctl; install or reset the agent by hand",
    "unsupported_distribution": "the distribution is neither RHEL-family nor Debian-family; "
    "install the agent by hand",
    "no_release_codename": "/etc/os-release names no release codename, so no apt repository "
    "line can be written; install the agent by hand",
    "no_primary_ipv4": "the host has no primary IPv4 address for AccessAddress; check its network",
    "not_installed": "the agent is not installed; run the install action instead",
    "token_write_failed": "the enrollment token file could not be written; check the disk and "
    "permissions of the agent's state directory",
    "config_write_failed": "sftd.yaml could not be written; check the disk and permissions",
    "repository_setup_failed": "the package repository or its signing key could not be set "
    "up; check that the host reaches the repository URLs",
    "package_install_failed": "the package manager could not install scaleft-server-tools; "
    "read its messages in the output",
    "stop_failed": "the agent service could not be stopped; look at it on the host",
    "device_token_delete_failed": "the device token could not be deleted; check permissions",
    "service_start_failed": "the agent service did not start; read its log on the host",
}


class SftActionResult(BaseModel):
    """How an install or reset script ended."""

    model_config = ConfigDict(frozen=True)

    outcome: SftActionOutcome
    reason: str | None = None
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome in {SftActionOutcome.INSTALLED, SftActionOutcome.RESET}


def parse_sft_action_result(text: str | None) -> SftActionResult:
    """The outcome of ``sft_install.sh``, ``sft_reset.sh`` or ``sft_reset.ps1`` from its output.

    Reads the last ``SFT_ACTION_RESULT=`` line. Never raises: without that line the outcome is
    ``unknown`` and the message says the script did not finish.
    """
    value: str | None = None
    for raw in clean_output(text if isinstance(text, str) else "").splitlines():
        line = raw.strip()
        if line.startswith("SFT_ACTION_RESULT="):
            value = line.partition("=")[2].strip()
    if value is None:
        return SftActionResult(
            outcome=SftActionOutcome.UNKNOWN,
            message="the script ended without its SFT_ACTION_RESULT line; read the instance's "
            "output and errors",
        )
    word, _, reason = value.partition(":")
    word = word.strip().lower()
    if word in {SftActionOutcome.INSTALLED, SftActionOutcome.RESET}:
        return SftActionResult(outcome=SftActionOutcome(word))
    if word == SftActionOutcome.FAILED:
        reason = reason.strip() or "unspecified"
        advice = _REASON_ADVICE.get(reason, "read the instance's output and errors")
        return SftActionResult(
            outcome=SftActionOutcome.FAILED, reason=reason, message=f"{reason}: {advice}"
        )
    return SftActionResult(
        outcome=SftActionOutcome.UNKNOWN,
        message=f"unrecognised SFT_ACTION_RESULT value {value[:40]!r}",
    )
