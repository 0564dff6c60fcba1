"""Which kernel each kernel group gets: from the flow's parameters, or from a person in the UI.

A group is staged only with a kernel from its own list (the kernels its instances reported as
installable, sorted as versions). A choice outside that list, or for a group that does not
exist, refuses the whole staging step before anything is staged, with a message listing each
group's options. A group left without a choice is not staged and is reported as such.

In the UI the flow pauses with a typed form (a Prefect ``RunInput``) holding one field per
group whose options are exactly that group's kernels, so the Prefect server itself refuses an
answer outside the list; the flow checks the answer again before staging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

from flows.common.pauses import PAUSE_POLL_SECONDS
from flows.common.text import markdown_text
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.prep.kernel_groups import KernelGroup
from flows.linux_patching.prep.parameters import KernelChoiceRequest


class ChoiceSource(StrEnum):
    PARAMETER = "parameter"
    UI = "ui"


class KernelChoiceError(ValueError):
    """A kernel was chosen that a group does not offer (or for a group that does not exist)."""


class GroupDecision(BaseModel):
    """The kernel a group will be staged with, or why it will not be staged."""

    group: str
    kernel: str | None = None
    source: ChoiceSource | None = None
    reason: str | None = Field(default=None, description="why the group is not staged")


def stageable_kernels(group: KernelGroup) -> list[str]:
    """The kernels of ``group`` that may be placed in a script, oldest first.

    The list comes from what the instances printed; a line that does not read as a plain kernel
    version is never offered, so it can never reach ``patchme.sh``.
    """
    offered: list[str] = []
    for kernel in group.available_kernels:
        try:
            valid = validate_kernel_version(kernel)
        except ValueError:
            continue
        if valid not in offered:
            offered.append(valid)
    return offered


def offer_counts(group: KernelGroup) -> str:
    """How many hosts of ``group`` offer each of its kernels, as a person reads it:
    ``4.18.0-553.8.1.el8_10 (3 of 4 hosts), 4.18.0-553.45.1.el8_10 (1 of 4 hosts)``. A kernel
    is staged only on the hosts that offer it."""
    total = len(group.instance_ids)
    return ", ".join(
        f"{kernel} ({len(group.offered_by(kernel))} of {total} hosts)"
        for kernel in stageable_kernels(group)
    )


def _options_text(groups: Sequence[KernelGroup]) -> str:
    return "; ".join(
        f"{g.name!r}: {', '.join(stageable_kernels(g)) or 'no kernel updates'}" for g in groups
    )


def decide_kernels(
    groups: Sequence[KernelGroup],
    per_group: Mapping[str, str | None],
    for_every_group: str | None = None,
    source: ChoiceSource = ChoiceSource.PARAMETER,
) -> list[GroupDecision]:
    """One decision per group, or ``KernelChoiceError`` naming every refused choice.

    ``per_group`` maps a group name to its kernel (``None``: leave the group unstaged);
    ``for_every_group`` stages one kernel on every group whose list holds it.
    """
    by_name = {group.name: group for group in groups}
    problems: list[str] = []
    for name in per_group:
        if name not in by_name:
            problems.append(f"there is no kernel group {name!r} in this run")
    everywhere = validate_kernel_version(for_every_group) if for_every_group else None
    decisions: list[GroupDecision] = []
    for group in groups:
        options = stageable_kernels(group)
        wanted = per_group.get(group.name)
        if wanted is not None:
            try:
                kernel = validate_kernel_version(wanted)
            except ValueError as exc:
                problems.append(f"group {group.name!r}: {exc}")
                continue
            if kernel not in options:
                problems.append(
                    f"kernel {kernel} is not in the list of group {group.name!r} "
                    f"({', '.join(options) or 'no kernel updates'})"
                )
                continue
            decisions.append(GroupDecision(group=group.name, kernel=kernel, source=source))
        elif not options:
            decisions.append(
                GroupDecision(
                    group=group.name,
                    reason="no kernel update is available to this group's instances",
                )
            )
        elif everywhere is not None and group.name not in per_group:
            if everywhere in options:
                decisions.append(GroupDecision(group=group.name, kernel=everywhere, source=source))
            else:
                decisions.append(
                    GroupDecision(
                        group=group.name,
                        reason=f"kernel {everywhere} is not offered to this group "
                        f"(options: {', '.join(options)})",
                    )
                )
        else:
            decisions.append(
                GroupDecision(group=group.name, reason="no kernel was chosen for this group")
            )
    if everywhere is not None and not any(d.kernel == everywhere for d in decisions):
        problems.append(f"kernel {everywhere} is offered to no group")
    if problems:
        raise KernelChoiceError(
            "kernel choice refused, nothing was staged: "
            + "; ".join(problems)
            + f". Options per group: {_options_text(groups) or 'no groups passed QC'}"
        )
    return decisions


def decide_from_parameters(
    groups: Sequence[KernelGroup], request: KernelChoiceRequest
) -> list[GroupDecision]:
    """Decisions from the flow's ``kernel_choices`` parameter."""
    return decide_kernels(groups, dict(request.per_group), request.for_every_group)


def kernel_choice_form(
    groups: Sequence[KernelGroup], preset: KernelChoiceRequest, change_number: str
) -> type[RunInput]:
    """A ``RunInput`` with one field per group that has kernels to offer.

    Each field is named by its group (``RHEL8.10 - Kernel 4.18.0-553``), lists exactly that
    group's kernels, and starts at the kernel given in ``kernel_choices`` if any, else the
    newest; emptying it leaves the group unstaged.
    """
    fields: dict[str, Any] = {}
    lines = [
        f"### Choose the kernel to stage for change {markdown_text(change_number)}",
        "",
        "One kernel per group; only the group's own kernels are accepted. Staging writes "
        "`patchme.sh` on each instance of the group whose own repositories offer the kernel "
        "(the others are reported `not_offered`); it installs nothing and reboots nothing. "
        "Leave a group empty to stage nothing on it.",
        "",
    ]
    for index, group in enumerate(groups):
        options = stageable_kernels(group)
        if not options:
            continue
        wanted = preset.per_group.get(group.name) or preset.for_every_group
        default = wanted if wanted in options else options[-1]
        instances = ", ".join(group.instance_ids)
        offers = offer_counts(group)
        fields[f"group_{index}"] = (
            Literal[tuple(options)] | None,
            Field(
                default=default,
                alias=group.name,
                title=group.name,
                description=f"{len(group.instance_ids)} instance(s): {instances}. "
                f"Hosts offering each kernel: {offers}",
            ),
        )
        lines.append(
            f"- **{markdown_text(group.name)}** ({len(group.instance_ids)} instance(s)): "
            + markdown_text(instances)
        )
        lines.append(f"  - hosts offering each kernel: {markdown_text(offers)}")
    form: type[RunInput] = create_model("KernelChoice", __base__=RunInput, **fields)
    # Prefect shows a RunInput's description above the form when the run waits for input.
    form._description = "\n".join(lines)
    return form


def ask_for_kernels(
    groups: Sequence[KernelGroup],
    preset: KernelChoiceRequest,
    change_number: str,
    timeout_seconds: int,
) -> list[GroupDecision]:
    """Pause the flow run until a person picks a kernel per group in the UI, then decide.

    Prefect fails the run if nobody answers within ``timeout_seconds``.
    """
    form = kernel_choice_form(groups, preset, change_number)
    answer = pause_flow_run(
        wait_for_input=form, timeout=timeout_seconds, poll_interval=PAUSE_POLL_SECONDS
    )
    chosen: dict[str, str | None] = answer.model_dump(by_alias=True)
    # Groups without options have no field; they get their reason from decide_kernels.
    return decide_kernels(groups, chosen, source=ChoiceSource.UI)
