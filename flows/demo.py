"""The README's first command: the main job, for real, on this machine, no cloud account needed.

It runs ``linux-qc-patching-prep`` on the ``local`` provider (the embedded default that runs
scripts on the Prefect worker's own host) with the production rules, CrowdStrike required
included, so a workstation without CrowdStrike fails QC: that is a finding, not an error of the
run. The change folder goes under the data directory (not ``/root`` as on a server), so that
a demo leaves nothing outside it. It prints each instance's verdict and where the reports are.

Exit status: 0 when the flow ran to its reports (whatever the verdicts), 1 when it could not.
"""

from __future__ import annotations

import os
import sys

from flows import linux_qc_patching_prep
from flows.common.reporting import utc_stamp
from flows.common.settings import get_settings
from flows.linux_patching.workdir import check_workdir
from providers.local import LocalProvider


def demo_workdir() -> str:
    """A directory in the data directory, writable by whoever runs the demo."""
    return str(get_settings().ensure_data_dir() / "demo-workdir")


def quiet_temporary_server() -> None:
    """Keep a first run's output to the flow's own logs.

    Without a Prefect server configured, Prefect starts a temporary one on SQLite whose
    background services print harmless "database is locked" tracebacks (Prefect issue 18934)
    and a telemetry error on a machine without internet. The server process inherits these.
    """
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def demo_requires_crowdstrike() -> bool:
    """As on a server, unless ``CLOUDOPS_DEMO_REQUIRE_CROWDSTRIKE=false`` (a workstation runs
    no CrowdStrike, so its QC fails that check by design)."""
    value = os.environ.get("CLOUDOPS_DEMO_REQUIRE_CROWDSTRIKE", "true").strip().lower()
    return value not in ("0", "false", "no", "off")


def main() -> int:
    quiet_temporary_server()
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
        require_crowdstrike=demo_requires_crowdstrike(),
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
