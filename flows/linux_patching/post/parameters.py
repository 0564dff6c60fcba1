"""The parameters of ``linux-qc-patching-post``, checked before anything touches a server."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from flows.changes import validate_change_number
from flows.common.parameters import ParameterError
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.post_check import REQUIRED_AGENTS, Agent, check_required_agents
from flows.linux_patching.workdir import check_workdir

POST_WORKFLOW = "linux-qc-patching-post"


class PostParameters(BaseModel):
    """The post flow's parameters once checked; values are safe to place in the script."""

    change_number: str
    workdir: str
    target_kernel: str | None
    timeout_seconds: int
    accept_newer_kernel: bool = False
    required_agents: tuple[Agent, ...] = tuple(Agent(a) for a in REQUIRED_AGENTS)


class PostParameterError(ParameterError):
    """One or more parameters of the post flow are not acceptable; every problem is listed."""

    workflow = POST_WORKFLOW


def validate_post_parameters(
    *,
    change_number: str,
    workdir: str,
    target_kernel: str | None,
    timeout_seconds: int,
    accept_newer_kernel: bool = False,
    required_agents: Sequence[str] | None = None,
) -> PostParameters:
    """The checked parameters, or ``PostParameterError`` listing every problem at once."""
    problems: list[str] = []
    number = ""
    try:
        number = validate_change_number(change_number)
    except ValueError as exc:
        problems.append(f"change_number: {exc}")
    workdir_problem = check_workdir(workdir)
    if workdir_problem:
        problems.append(workdir_problem)
    kernel: str | None = None
    if target_kernel is not None and str(target_kernel).strip():
        try:
            kernel = validate_kernel_version(target_kernel)
        except ValueError as exc:
            problems.append(f"target_kernel: {exc}")
    if not 60 <= timeout_seconds <= 7_200:
        problems.append(f"timeout_seconds {timeout_seconds} must be between 60 and 7200 seconds")
    agents, agents_problem = check_required_agents(required_agents)
    if agents_problem:
        problems.append(agents_problem)
    if problems:
        raise PostParameterError(problems)
    return PostParameters(
        change_number=number,
        workdir=workdir,
        target_kernel=kernel,
        timeout_seconds=timeout_seconds,
        accept_newer_kernel=accept_newer_kernel,
        required_agents=tuple(agents),
    )
