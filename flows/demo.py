"""The README's first command: the main job, for real, on this machine, no cloud account needed.

It runs ``linux-qc-patching-prep`` on the ``local`` provider (the embedded default that runs
scripts on the Prefect worker's own host) with the production rules, CrowdStrike required
included, so a workstation without CrowdStrike fails QC: that is a finding, not an error of the
run. The change folder goes to ``/root`` as on a server when run as root, else under the data
directory. It prints each instance's verdict and where the reports are.

Exit status: 0 when the flow ran to its reports (whatever the verdicts), 1 when it could not.
"""

from __future__ import annotations

import os
import sys

from flows.linux_qc_patching_prep import linux_qc_patching_prep
from flows.prep_parameters import check_workdir
from flows.reporting import utc_stamp
from flows.settings import get_settings
from providers.local import LocalProvider


def demo_workdir() -> str:
    """``/root`` for root, as on a real server; a directory the user can write otherwise."""
    if os.geteuid() == 0:
        return "/root"
    return str(get_settings().ensure_data_dir() / "demo-workdir")


def main() -> int:
    workdir = demo_workdir()
    problem = check_workdir(workdir)
    if problem:
        print(f"demo: {problem}; set CLOUDOPS_DATA_DIR to a simpler path", file=sys.stderr)
        return 1
    change = f"DEMO-{utc_stamp()}"
    result = linux_qc_patching_prep(
        change_number=change,
        instances=[LocalProvider.TARGET],
        provider="local",
        workdir=workdir,
        require_crowdstrike=True,
    )
    print(f"\nchange {change} on this machine (change folder {workdir}/{change}):")
    for instance in result.instances:
        report = instance.report
        facts = f" [{report.distro}, kernel {report.kernel}]" if report and report.kernel else ""
        print(f"\n{instance.instance_id}: QC {instance.verdict.value.upper()}{facts}")
        for reason in instance.reasons:
            print(f"  - {reason}")
    for group in result.groups:
        print(f"\nkernel group {group.name}: {', '.join(group.available_kernels) or 'no updates'}")
    print(f"\nreport (all steps): {result.qc_results_report}")
    if result.final_report:
        print(f"final report (QC reports and patch scripts): {result.final_report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
