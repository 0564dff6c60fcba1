"""``cloudops changes``: import with the flows' intake and errors, list, show, and what a new
version added, removed or moved."""

from __future__ import annotations

from pathlib import Path

from flows.store import Store
from tests.flows.cli.change_records import ACCOUNT, instance
from tests.flows.cli.conftest import Cloudops

HEADER = "Change Number,Instance ID,Account ID,Region,Platform,Name\n"


def change_file(tmp_path: Path, rows: list[str], name: str = "change.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def row(n: int, region: str = "us-east-1", account: str = ACCOUNT, name: str = "") -> str:
    return f"CHG0012345,{instance(n)},{account},{region},linux,{name or f'web-{n:02d}'}"


def test_an_import_stores_the_change_and_list_and_show_find_it(
    cloudops: Cloudops, store: Store, tmp_path: Path
) -> None:
    path = change_file(tmp_path, [row(1), row(2), row(3)])

    imported = cloudops("changes", "import", str(path))
    listed = cloudops("changes", "list")
    shown = cloudops("changes", "show", "CHG0012345")

    assert imported.exit_code == 0, imported.output
    assert "CHG0012345: saved version 1, 3 instance(s)" in imported.stdout
    assert listed.exit_code == 0
    [line] = [ln for ln in listed.stdout.splitlines() if "CHG0012345" in ln]
    assert line.split("│")[1:4] == [" CHG0012345 ", " 3         ", " 1       "]
    assert shown.exit_code == 0
    assert "CHG0012345: 3 instance(s), version 1" in shown.stdout
    assert all(instance(n) in shown.stdout for n in (1, 2, 3))
    assert store.load_change("CHG0012345") is not None


def test_a_bad_file_lists_every_problem_with_its_row_and_stores_nothing(
    cloudops: Cloudops, store: Store, tmp_path: Path
) -> None:
    path = change_file(
        tmp_path,
        [row(1), "CHG0012345,i-nothex,111111111111,us-east-1,linux,x", row(3, account="11111111")],
    )

    imported = cloudops("changes", "import", str(path))

    assert imported.exit_code == 1
    assert "Change file rejected (2 problems" in imported.stderr
    assert "row 3, instance_id" in imported.stderr
    assert "row 4, account_id" in imported.stderr
    assert "dropped a leading zero" in imported.stderr
    assert "Traceback" not in imported.output
    assert store.list_changes() == []


def test_a_missing_file_is_named(cloudops: Cloudops, store: Store, tmp_path: Path) -> None:
    imported = cloudops("changes", "import", str(tmp_path / "nope.csv"))
    assert imported.exit_code == 1
    assert f"no change file at '{tmp_path / 'nope.csv'}'" in imported.stderr


def test_a_new_version_says_what_it_added_removed_and_moved(
    cloudops: Cloudops, store: Store, tmp_path: Path
) -> None:
    cloudops("changes", "import", str(change_file(tmp_path, [row(1), row(2), row(3)], "v1.csv")))
    second = change_file(
        tmp_path, [row(1), row(3, region="us-west-2"), row(4), row(1 + 0)], "v2.csv"
    )  # web-02 removed, web-03 moved, web-04 added, web-01 listed twice (merged)

    imported = cloudops("changes", "import", str(second))
    diff = cloudops("changes", "diff", "CHG0012345")
    again = cloudops("changes", "import", str(second))

    assert imported.exit_code == 0, imported.output
    assert "saved version 2, 3 instance(s) (1 added, 1 removed, 1 moved, 0 altered)" in (
        imported.stdout
    )
    assert "warning:" in imported.stdout  # the merged duplicate row
    assert diff.exit_code == 0
    assert "version 2" in diff.stdout and "against version 1" in diff.stdout
    added, removed, moved = (
        diff.stdout.split(title)[1] for title in ("Added (1)", "Removed (1)", "Moved (1)")
    )
    assert instance(4) in added.split("Removed")[0]
    assert instance(2) in removed.split("Moved")[0]
    assert instance(3) in moved and "us-east-1" in moved and "us-west-2" in moved
    assert "unchanged (version 2)" in again.stdout
    assert [len(v.targets) for v in store.change_versions("CHG0012345")] == [3, 3]


def test_the_first_version_has_nothing_to_compare(
    cloudops: Cloudops, store: Store, tmp_path: Path
) -> None:
    cloudops("changes", "import", str(change_file(tmp_path, [row(1)])))
    diff = cloudops("changes", "diff", "CHG0012345")
    assert diff.exit_code == 0
    assert "is the first saved version" in diff.stdout
    assert cloudops("changes", "diff", "CHG0012345", "--version", "7").exit_code == 2


def test_unknown_and_malformed_changes(cloudops: Cloudops, store: Store) -> None:
    unknown = cloudops("changes", "show", "CHG9999999")
    malformed = cloudops("changes", "show", "CHG 1; rm")
    assert (unknown.exit_code, malformed.exit_code) == (1, 2)
    assert "no change CHG9999999 is stored" in unknown.stderr
    assert "cloudops changes list" in unknown.stderr
    assert "is not a valid change number" in malformed.stderr
    assert "no change is stored" in cloudops("changes", "list").stderr
