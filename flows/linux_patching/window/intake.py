"""Which servers a patch window works on, and what prep recorded for each.

By default the window takes every Linux instance of the stored change whose prep QC passed and
whose staged kernel prep recorded; the change's other instances are listed as left out, with
prep's reason. Instances given by name are all in the window: one that prep did not stage is
refused at preflight with the reason, so a person who named it sees why it was not patched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flows.common.targets import distinct_targets
from flows.linux_patching.kernels import base_kernel, kernel_group_name
from flows.linux_patching.prep_record import PrepRecord
from flows.linux_patching.window.result import LeftOutInstance
from providers.base import Platform, Target


@dataclass(frozen=True)
class WindowTargets:
    """The instances of the window (each once) and the change's instances left out of it."""

    targets: list[Target]
    left_out: list[LeftOutInstance]


def not_staged_reason(target: Target, prep: PrepRecord | None, change_number: str) -> str | None:
    """Why prep left no kernel to install on ``target``, or None when it staged one."""
    if target.platform is Platform.WINDOWS:
        return "Windows server: the Linux patch window does not apply"
    if prep is None or prep.qc_status is None:
        return (
            f"no prep QC is recorded for it in change {change_number}: run "
            "linux-qc-patching-prep on it first"
        )
    if prep.qc_before != "passed":
        why = "; ".join(prep.qc_reasons) or "no reason recorded"
        return f"its prep QC {prep.qc_before} ({why}): not patched in this change"
    if not prep.staged_kernel:
        why = prep.staging_problem or "no kernel was staged for its group"
        return f"prep staged no kernel on it: {why}"
    return None


def window_targets(
    change_targets: Sequence[Target],
    named: Sequence[Target] | None,
    prep_records: Mapping[str, PrepRecord],
    change_number: str,
) -> WindowTargets:
    """The window's instances: the ``named`` ones, or the staged instances of the change."""
    if named is not None:
        return WindowTargets(targets=distinct_targets(named), left_out=[])
    targets: list[Target] = []
    left_out: list[LeftOutInstance] = []
    for target in distinct_targets(change_targets):
        reason = not_staged_reason(target, prep_records.get(target.instance_id), change_number)
        if reason is None:
            targets.append(target)
        else:
            left_out.append(
                LeftOutInstance(
                    instance_id=target.instance_id,
                    account_id=target.account_id,
                    region=target.region,
                    name=target.name,
                    reason=reason,
                )
            )
    return WindowTargets(targets=targets, left_out=left_out)


def kernel_group_of(prep: PrepRecord | None) -> str:
    """The kernel group prep put the instance in (distribution and base kernel), for canaries
    and reports; ``unknown`` without a QC report."""
    report = prep.qc_report if prep is not None else None
    if report is None or not report.kernel:
        return "unknown"
    return kernel_group_name(report.distro or "Unknown", base_kernel(report.kernel))
