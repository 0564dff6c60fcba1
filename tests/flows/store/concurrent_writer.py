"""A process that writes runs into a store, for the concurrency tests (run with spawn)."""

from __future__ import annotations

from flows.store import Store
from tests.flows.store.conftest import make_result


def write_runs(url: str, writer: int, runs: int, instances: int, start_event) -> int:
    """Wait for the start signal, then record ``runs`` finished runs; returns runs written."""
    start_event.wait()
    with Store(url) as store:
        for n in range(runs):
            run_id = store.start_run(
                f"writer-{writer}-run-{n}", "linux-qc-patching-prep", "qc", "aws", "CHG1"
            )
            store.record_results(
                run_id, [make_result(f"i-{writer:04x}{n:04x}{i:09x}") for i in range(instances)]
            )
            store.finish_run(run_id, "success", instances, 0)
    return runs
