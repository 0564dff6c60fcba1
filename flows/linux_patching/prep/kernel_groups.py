"""Kernel groups: the servers that passed QC, by distribution and base kernel.

Operators choose one kernel per group and stage it on its servers, so a group gathers what its
servers have in common (distribution, running base kernel), the kernels they can install (the
union, sorted as versions) and which server offers which: a kernel is staged only on the servers
whose own repositories offer it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from flows.linux_patching.kernels import (
    UNKNOWN_DISTRO,
    base_kernel,
    kernel_group_name,
    kernel_sort_key,
    normalize_kernel,
    sort_kernels,
)
from flows.linux_patching.qc_report import QcReport


class KernelGroup(BaseModel):
    """Servers that passed QC on the same distribution and base kernel.

    One kernel is chosen for the whole group and staged on each of its instances.
    """

    name: str = Field(description="for a person, e.g. 'RHEL8.10 - Kernel 4.18.0-553'")
    distro: str = Field(description="e.g. RHEL8.10, AL2023, Ubuntu22.04; 'Unknown' if not known")
    base_kernel: str = Field(description="upstream version and build number, e.g. 4.18.0-553")
    instance_ids: list[str] = Field(description="sorted")
    available_kernels: list[str] = Field(
        description="union of the kernels the instances can install, oldest first"
    )
    instance_kernels: dict[str, list[str]] = Field(
        default_factory=dict, description="instance id -> the kernels its own QC listed"
    )

    def offered_by(self, kernel: str) -> list[str]:
        """The instances of this group whose own QC listed ``kernel``, sorted."""
        wanted = normalize_kernel(kernel)
        return sorted(
            iid
            for iid, kernels in self.instance_kernels.items()
            if wanted in {normalize_kernel(k) for k in kernels}
        )

    def offers(self, instance_id: str, kernel: str) -> bool:
        """Whether ``instance_id`` listed ``kernel`` among its own installable kernels."""
        return instance_id in self.offered_by(kernel)


def group_kernels(reports: Mapping[str, QcReport]) -> list[KernelGroup]:
    """Group the instances whose QC passed by distribution and base running kernel.

    ``reports`` maps instance id to its parsed QC report; failed reports are left out (they are
    not patched). Groups come out ordered by distribution, then base kernel as a version.
    """
    members: dict[tuple[str, str], list[str]] = {}
    kernels: dict[tuple[str, str], set[str]] = {}
    for instance_id, report in reports.items():
        if not report.passed or not report.kernel:
            continue
        key = (report.distro or UNKNOWN_DISTRO, base_kernel(report.kernel))
        members.setdefault(key, []).append(instance_id)
        kernels.setdefault(key, set()).update(report.available_kernels)
    ordered = sorted(members, key=lambda key: (key[0], kernel_sort_key(key[1]), key[1]))
    return [
        KernelGroup(
            name=kernel_group_name(distro, base),
            distro=distro,
            base_kernel=base,
            instance_ids=sorted(members[(distro, base)]),
            available_kernels=sort_kernels(kernels[(distro, base)]),
            instance_kernels={
                iid: sort_kernels(reports[iid].available_kernels)
                for iid in sorted(members[(distro, base)])
            },
        )
        for distro, base in ordered
    ]
