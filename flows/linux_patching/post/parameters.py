"""The parameters of ``linux-qc-patching-post``, checked before anything touches a server."""

from __future__ import annotations

from pydantic import BaseModel

from flows.changes import validate_change_number
from flows.common.parameters import ParameterError
from flows.linux_patching.kernels import validate_kernel_version
from flows.linux_patching.workdir import check_workdir

POST_WORKFLOW = "linux-qc-patching-post"


class PostParameters(BaseModel):
    """The post flow's parameters once checked; values are safe to place in the script."""

    change_number: str
    workdir: str
    target_kernel: str | None
    timeout_seconds: int


class PostParameterError(ParameterError):
    """One or more parameters of the post flow are not acceptable; every problem is listed."""

    workflow = POST_WORKFLOW


def validate_post_parameters(
    *, change_number: str, workdir: str, target_kernel: str | None, timeout_seconds: int
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
    if problems:
        raise PostParameterError(problems)
    return PostParameters(
        change_number=number,
        workdir=workdir,
        target_kernel=kernel,
        timeout_seconds=timeout_seconds,
    )
