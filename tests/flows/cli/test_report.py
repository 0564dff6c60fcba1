"""``cloudops report``: the change's report from the store, as markdown, CSV or HTML, with the
hostile text a server may print made harmless in each format."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flows.store import Store
from tests.flows.cli.change_records import (
    CHANGE,
    STAGED,
    ChangeRecords,
    change,
    instance,
    qc,
    through_prep_window_and_post,
)
from tests.flows.cli.conftest import Cloudops

HOSTILE = '=HYPERLINK("http://evil")</td><script>alert(1)</script> | <img src=x onerror=y>'


def test_csv_has_one_row_per_instance_with_every_verdict(cloudops: Cloudops, store: Store) -> None:
    through_prep_window_and_post(store)

    made = cloudops("report", CHANGE, "--format", "csv")

    assert made.exit_code == 0, made.output
    rows = list(csv.DictReader(io.StringIO(made.stdout)))
    assert [r["instance_id"] for r in rows] == [instance(n) for n in range(1, 6)]
    by_id = {r["instance_id"]: r for r in rows}
    first, second, third = (by_id[instance(n)] for n in (1, 2, 3))
    assert (first["prep_qc"], first["staged_kernel"], first["window_status"], first["post"]) == (
        "passed",
        STAGED,
        "patched",
        "passed",
    )
    assert first["kernel_after"] == STAGED + ".x86_64"
    assert (second["window_status"], second["window_reasons"]) == (
        "install_failed",
        "dnf: no space left on /boot",
    )
    assert (third["post"], third["post_reasons"]) == ("failed", "running kernel is not the target")
    assert by_id[instance(4)]["window_status"] == "refused_preflight"
    assert all(r["change_number"] == CHANGE and r["in_change"] == "yes" for r in rows)


def test_csv_cells_cannot_run_as_spreadsheet_formulas(cloudops: Cloudops, store: Store) -> None:
    store.save_change(change(1))
    ChangeRecords(store).prep("prep", {1: qc(False, "web-01", HOSTILE)})

    made = cloudops("report", CHANGE, "-f", "csv")

    [row] = list(csv.DictReader(io.StringIO(made.stdout)))
    assert row["prep_reasons"] == "'" + HOSTILE


def test_html_escapes_what_servers_print_and_runs_no_script(
    cloudops: Cloudops, store: Store, tmp_path: Path
) -> None:
    store.save_change(change(1, 2))
    records = ChangeRecords(store)
    records.prep("prep", {1: qc(False, "web-01", HOSTILE), 2: qc(True, "web-02")})
    target = tmp_path / "out" / "report.html"

    made = cloudops("report", CHANGE, "--format", "html", "-o", str(target))

    assert made.exit_code == 0, made.output
    assert f"wrote the html report of {CHANGE} to {target}" in made.stderr
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<img" not in page and "</td><script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src 'none'" in page  # no script would run even if some slipped through
    assert page.count("<tr>") == 2 + 1 + 2  # two instances, one run, two header rows


def test_markdown_tables_keep_their_shape(cloudops: Cloudops, store: Store) -> None:
    through_prep_window_and_post(store)
    ChangeRecords(store).prep("prep-again", {1: qc(False, "web-01", HOSTILE)})

    made = cloudops("report", CHANGE)

    assert made.exit_code == 0, made.output
    assert made.stdout.startswith(f"# Change report {CHANGE}\n")
    instances = made.stdout.split("## Instances", 1)[1].split("## Runs", 1)[0]
    rows = [ln for ln in instances.splitlines() if ln.startswith("| i-")]
    assert len(rows) == 5
    # every row has as many cells as the header: the pipe in the reason is escaped
    assert {ln.replace("\\|", "").count("|") for ln in rows} == {11}
    assert "<script>" not in made.stdout and "&lt;script&gt;" in made.stdout


def test_a_format_it_does_not_make_is_bad_usage(cloudops: Cloudops, store: Store) -> None:
    made = cloudops("report", CHANGE, "--format", "pdf")
    assert made.exit_code == 2
    assert "pdf" in made.output
