"""The parameters of ``linux-qc-patching-prep``, checked before anything touches a server.

Every value that ends up in a remote script (change number, work directory, patcher location
and switches, kernels) is checked here against the same character rules the scripts enforce,
so a bad value is refused with a message naming it, and nothing is sent. The scripts refuse
them again on the server, and ``render_script`` quotes them: three locks, not one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel, Field

from flows.changes import validate_change_number
from flows.common.parameters import ParameterError
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.prep_record import PREP_WORKFLOW, PrepStep
from flows.linux_patching.workdir import check_workdir


class QcEngine(StrEnum):
    """Who produces the QC report: our ``linux/qc.sh``, or the team's external Linux Patcher."""

    BUILTIN = "builtin"
    LINUX_PATCHER = "linux-patcher"


ALL_STEPS: tuple[str, ...] = tuple(step.value for step in PrepStep)

# The same rules as the scripts' own refusals (see the headers of linux/qc.sh and
# linux/linux_patcher_qc.sh).
_PATCHER_URL = re.compile(r"(?:https|s3)://[A-Za-z0-9._~/?&=%+,:@-]{1,1000}")
_PATCHER_ARGS = re.compile(r"[A-Za-z0-9 _.=,/:-]{0,200}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_GROUP_NAME_MAX = 200


class PrepParameterError(ParameterError):
    """One or more parameters of the prep flow are not acceptable; every problem is listed."""

    workflow = PREP_WORKFLOW


class KernelChoiceRequest(BaseModel):
    """The kernels the flow was told to stage, as given in ``kernel_choices``.

    A mapping names one kernel per group (``{"RHEL8.10 - Kernel 4.18.0-553":
    "4.18.0-553.45.1.el8_10"}``); a single kernel string applies to every group whose list
    holds it, and the other groups are not staged.
    """

    per_group: dict[str, str] = Field(default_factory=dict)
    for_every_group: str | None = None


class PrepParameters(BaseModel):
    """The prep flow's parameters once checked; values are safe to place in the scripts."""

    change_number: str | None
    workdir: str
    qc_engine: QcEngine
    patcher_url: str | None
    patcher_args: str
    patcher_sha256: str | None
    kernel_choices: KernelChoiceRequest
    steps: tuple[PrepStep, ...]
    min_var_free_gb: int
    qc_timeout_seconds: int

    def runs(self, step: PrepStep) -> bool:
        return step in self.steps


def _check_kernel_choices(
    kernel_choices: Mapping[str, str] | str | None, problems: list[str]
) -> KernelChoiceRequest:
    if kernel_choices is None:
        return KernelChoiceRequest()
    if isinstance(kernel_choices, str):
        if not kernel_choices.strip():
            return KernelChoiceRequest()
        try:
            return KernelChoiceRequest(for_every_group=validate_kernel_version(kernel_choices))
        except ValueError as exc:
            problems.append(f"kernel_choices: {exc}")
            return KernelChoiceRequest()
    if not isinstance(kernel_choices, Mapping):
        problems.append(
            "kernel_choices must be a mapping of kernel group name to kernel, or one kernel "
            f"for every group; got {type(kernel_choices).__name__}"
        )
        return KernelChoiceRequest()
    per_group: dict[str, str] = {}
    for group, kernel in kernel_choices.items():
        if not isinstance(group, str) or not group.strip() or len(group) > _GROUP_NAME_MAX:
            problems.append(
                f"kernel_choices: {group!r} is not a kernel group name such as "
                "'RHEL8.10 - Kernel 4.18.0-553'"
            )
            continue
        try:
            per_group[group.strip()] = validate_kernel_version(kernel)
        except ValueError as exc:
            problems.append(f"kernel_choices[{group!r}]: {exc}")
    return KernelChoiceRequest(per_group=per_group)


def _check_steps(steps: Iterable[str] | str, problems: list[str]) -> tuple[PrepStep, ...]:
    if isinstance(steps, str):
        steps = [steps]
    wanted: set[PrepStep] = set()
    unknown = 0
    for step in steps:
        try:
            wanted.add(PrepStep(step))
        except ValueError:
            unknown += 1
            problems.append(f"steps: {step!r} is not a step; the steps are {', '.join(ALL_STEPS)}")
    if not wanted and not unknown:
        problems.append(f"steps is empty; give one or more of {', '.join(ALL_STEPS)}")
    # Runbook order, whatever order they were given in.
    return tuple(step for step in PrepStep if step in wanted)


def _check_patcher(
    engine: QcEngine | None,
    url: str | None,
    args: str,
    sha256: str | None,
    problems: list[str],
) -> None:
    if engine is not QcEngine.LINUX_PATCHER:
        if url:
            problems.append("patcher_url is given but qc_engine is not 'linux-patcher'")
        return
    if not url:
        problems.append(
            "qc_engine 'linux-patcher' needs patcher_url: the https:// or s3:// location of the "
            "Linux Patcher script"
        )
    elif not _PATCHER_URL.fullmatch(url):
        shown = url.split("?", 1)[0]
        problems.append(
            f"patcher_url {shown!r} must be an https:// or s3:// location without spaces, "
            "quotes, '$', backticks or ';'"
        )
    if not isinstance(args, str) or not _PATCHER_ARGS.fullmatch(args):
        problems.append(
            f"patcher_args {args!r} may hold only letters, digits, spaces and - _ . = , / : "
            "(the patcher's QC switch, such as -q)"
        )
    elif not args.strip():
        problems.append(
            "patcher_args is empty: the patcher must be told to do QC only (such as -q), "
            "or it may patch"
        )
    if sha256 and not _SHA256.fullmatch(sha256):
        problems.append("patcher_sha256 must be 64 hexadecimal digits")


def validate_prep_parameters(
    *,
    change_number: str | None,
    change_csv: str | None,
    workdir: str,
    qc_engine: str,
    patcher_url: str | None,
    patcher_args: str,
    patcher_sha256: str | None,
    kernel_choices: Mapping[str, str] | str | None,
    steps: Iterable[str] | str,
    min_var_free_gb: int,
    qc_timeout_seconds: int,
) -> PrepParameters:
    """The checked parameters, or ``PrepParameterError`` listing every problem at once."""
    problems: list[str] = []
    number: str | None = None
    if change_number is not None:
        try:
            number = validate_change_number(change_number)
        except ValueError as exc:
            problems.append(f"change_number: {exc}")
    elif not change_csv:
        problems.append(
            "change_number is required (it names the change folder on each server), unless "
            "change_csv gives it"
        )
    workdir_problem = check_workdir(workdir)
    if workdir_problem:
        problems.append(workdir_problem)
    engine: QcEngine | None = None
    try:
        engine = QcEngine(qc_engine)
    except ValueError:
        problems.append(
            f"qc_engine {qc_engine!r} is not known; use one of "
            f"{', '.join(e.value for e in QcEngine)}"
        )
    _check_patcher(engine, patcher_url, patcher_args, patcher_sha256, problems)
    choices = _check_kernel_choices(kernel_choices, problems)
    chosen_steps = _check_steps(steps, problems)
    if not 1 <= min_var_free_gb <= 10_000:
        problems.append(f"min_var_free_gb {min_var_free_gb} must be between 1 and 10000 GB")
    if not 120 <= qc_timeout_seconds <= 86_400:
        problems.append(
            f"qc_timeout_seconds {qc_timeout_seconds} must be between 120 and 86400 seconds"
        )
    if problems:
        raise PrepParameterError(problems)
    assert engine is not None
    return PrepParameters(
        change_number=number,
        workdir=workdir,
        qc_engine=engine,
        patcher_url=patcher_url or None,
        patcher_args=patcher_args.strip(),
        patcher_sha256=patcher_sha256 or None,
        kernel_choices=choices,
        steps=chosen_steps,
        min_var_free_gb=min_var_free_gb,
        qc_timeout_seconds=qc_timeout_seconds,
    )
