"""The README's first command: a real workflow on this machine, no cloud account needed.

It runs the bundled ``linux/host_facts.sh`` through ``run-script`` on the ``local`` provider
(the embedded default that runs scripts on the Prefect worker's own host) and prints where
the report is.
"""

from __future__ import annotations

import sys

from flows.run_script import run_script


def main() -> int:
    result = run_script(script_name="linux/host_facts.sh", provider="local", discovery={})
    for r in result.batch.results:
        print(f"\n{r.instance_id}: {r.status.value}\n{r.stdout.rstrip()}")
    print(f"\nreport: {result.report_path}")
    return 0 if result.batch.failure_count == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
