"""Change intake benchmark: what a large or hostile change file costs before it is refused.

    python benchmarks/change_intake.py [--bad-rows 100000] [--good-rows 10000]

Each case runs in a fresh Python process (so its memory figures are its own) and reads one
change file through ``flows.changes.load_change_input``, as every flow does with its
``change_csv`` parameter:

- ``bad rows as text``: a CSV of ``--bad-rows`` rows with three bad cells each (instance,
  account and region), given as CSV text;
- ``bad rows as a file``: the same file saved in the changes directory, given by its path;
- ``60,000 bad rows``: a file under the size limit but past the row limit;
- ``--good-rows`` bad rows (the documented row limit by default): the most a file can hold
  that is checked row by row (three problems a row);
- ``--good-rows`` good rows: the largest change that is accepted.

It prints, per case: wall time, the size of the error message (what Prefect keeps as the
failed run's state message), how many problems the message lists and how many it counts,
tracemalloc's peak of Python allocations while reading, and the process's maximum RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HEADER = "change_number,instance_id,account_id,region,platform,name\n"


def bad_rows(count: int) -> str:
    """Rows with three bad cells each: a short instance id, 11-digit account, unknown region."""
    rows = (
        f"CHG0012345,i-{n:07x},{n % 10**11:011d},us-nowhere-{n % 9},linux,web{n}\n"
        for n in range(count)
    )
    return HEADER + "".join(rows)


def good_rows(count: int) -> str:
    rows = (
        f"CHG0012345,i-{n:017x},{100000000000 + n % 1000:012d},us-east-1,linux,web{n}\n"
        for n in range(count)
    )
    return HEADER + "".join(rows)


def measure(value: str) -> dict[str, object]:
    """Read one change (in this process) and say what it cost."""
    from flows.changes import ChangeFileError, load_change_input

    tracemalloc.start()
    started = time.perf_counter()
    outcome: dict[str, object]
    try:
        spec = load_change_input(value)
        outcome = {"result": f"accepted, {len(spec.targets)} instances", "message_bytes": 0}
    except ChangeFileError as exc:
        message = str(exc)
        listed = sum(1 for line in message.splitlines() if line.startswith("row "))
        outcome = {
            "result": "refused",
            "message_bytes": len(message.encode()),
            "problems_listed": listed,
            "last_line": message.splitlines()[-1][:120],
        }
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        **outcome,
        "seconds": round(seconds, 2),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_case(value_file: Path, as_path: bool) -> dict[str, object]:
    """``measure`` in a fresh interpreter, on the file's text or on its path."""
    code = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "from benchmarks.change_intake import measure;"
        "p = Path(sys.argv[1]); value = sys.argv[1] if sys.argv[2] == 'path' else p.read_text();"
        "print(json.dumps(measure(value)))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code, str(value_file), "path" if as_path else "text", root],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bad-rows", type=int, default=100_000)
    parser.add_argument("--good-rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="change-intake-") as scratch:
        changes = Path(scratch) / "changes"
        changes.mkdir()
        os.environ["CLOUDOPS_DATA_DIR"] = scratch
        os.environ["CLOUDOPS_CHANGES_DIR"] = str(changes)
        files = {
            "big": bad_rows(args.bad_rows),
            "rows": bad_rows(60_000),
            "limit": bad_rows(args.good_rows),
            "good": good_rows(args.good_rows),
        }
        paths = {}
        for name, text in files.items():
            paths[name] = changes / f"CHG_{name.upper()}.csv"
            paths[name].write_text(text)

        def size(name: str) -> str:
            return f"{paths[name].stat().st_size / 2**20:.1f} MB"

        cases = [
            (f"{args.bad_rows:,} bad rows as text ({size('big')})", paths["big"], False),
            (f"{args.bad_rows:,} bad rows as a file", paths["big"], True),
            (f"60,000 bad rows as a file ({size('rows')})", paths["rows"], True),
            (f"{args.good_rows:,} bad rows as a file ({size('limit')})", paths["limit"], True),
            (f"{args.good_rows:,} good rows as a file ({size('good')})", paths["good"], True),
        ]
        for label, path, as_path in cases:
            figures = run_case(path, as_path)
            print(f"{label}:")
            for key, value in figures.items():
                print(f"    {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
