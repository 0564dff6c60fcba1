"""The folders the scripts write in on a server (``<workdir>/<CHANGE>``), attacked the way a
local user would: a world-writable work directory with a link planted where root writes, a
change folder that is a link or belongs to someone else, a link planted in an older folder.

The scripts run for real on fake servers. "Owned by root" there means owned by the user the
tests run as (the scripts check the user they run as, root on a real server); the tests that
need a folder owned by *another* user run only as root, where they can make one.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from flows.common.remote_scripts import load_script
from tests.flows.scripts.fake_linux_hosts import LinuxSandbox
from tests.flows.scripts.test_qc_script import PATCHER, serve
from tests.flows.scripts.test_sft_scripts import TOKEN, TOKEN_FILE_CONTENT, FakeHost

CHANGE = "CHG0012345"
SHARED = "/var/tmp/cloudops"  # the work directory an old message of ours suggested
PATCHER_URL = "https://repo.example.com/linux_patcher.sh"
WRITERS = ["linux/qc.sh", "linux/linux_patcher_qc.sh", "linux/stage_kernel.sh"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's folder")


def run(host: LinuxSandbox, script: str, workdir: str = "/root") -> subprocess.CompletedProcess:
    params = {"CHANGE_NUMBER": CHANGE, "WORKDIR": workdir}
    if script == "linux/linux_patcher_qc.sh":
        serve(host, PATCHER)
        params["PATCHER_URL"] = PATCHER_URL
    if script == "linux/stage_kernel.sh":
        params["NEW_KERNEL"] = "4.18.0-553.45.1.el8_10"
        params["PATCHME_BODY"] = load_script("linux/window_install.sh")
    return host.run(script, params)


def victim(host: LinuxSandbox) -> Path:
    """A file root would never mean to touch, which an attacker's link points to."""
    path = host.write("/etc/cron.daily/logrotate", "#!/bin/sh\n/usr/sbin/logrotate\n")
    path.chmod(0o644)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_untouched(path: Path) -> None:
    assert path.read_text() == "#!/bin/sh\n/usr/sbin/logrotate\n"
    assert mode(path) == 0o644


def test_the_issues_attack_a_link_planted_in_a_world_writable_workdir_is_refused(
    rhel_host: LinuxSandbox,
) -> None:
    target = victim(rhel_host)
    shared = rhel_host.server_path(SHARED)
    (shared / CHANGE).mkdir(parents=True)
    for folder in (shared, shared / CHANGE):
        folder.chmod(0o1777)
    (shared / CHANGE / "linux_patcher.sh.part").symlink_to(target)

    result = run(rhel_host, "linux/linux_patcher_qc.sh", SHARED)

    assert result.returncode == 2
    assert f"the work directory {SHARED} is writable by every user" in result.stderr
    assert_untouched(target)
    assert rhel_host.calls("curl") == [] and rhel_host.calls("linux_patcher") == []


@pytest.mark.parametrize("script", WRITERS)
def test_a_change_folder_that_is_a_link_is_refused(rhel_host: LinuxSandbox, script: str) -> None:
    elsewhere = rhel_host.server_path("/etc/cron.d")
    elsewhere.mkdir(parents=True)
    rhel_host.server_path("/root").mkdir(mode=0o700, exist_ok=True)
    rhel_host.server_path(f"/root/{CHANGE}").symlink_to(elsewhere)

    result = run(rhel_host, script)

    assert result.returncode == 2
    assert f"the change folder /root/{CHANGE} is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("script", WRITERS)
def test_a_link_planted_in_an_older_change_folder_is_replaced_not_followed(
    rhel_host: LinuxSandbox, script: str
) -> None:
    target = victim(rhel_host)
    folder = rhel_host.server_path(f"/root/{CHANGE}")
    folder.mkdir(parents=True, mode=0o755)
    planted = ["qc_report.txt", "qc_repo_check.log", "patchme.sh", "linux_patcher.sh"]
    for name in [*planted, *(f"{name}.part" for name in planted)]:
        (folder / name).symlink_to(target)

    result = run(rhel_host, script)

    assert result.returncode == 0, result.stderr
    assert_untouched(target)
    assert mode(folder) == 0o700
    written = [p for p in folder.iterdir() if not p.is_symlink()]
    assert written, "the script wrote nothing"
    assert all(p.is_file() and mode(p) in (0o600, 0o700) for p in written)


@pytest.mark.parametrize("script", WRITERS)
def test_a_new_change_folder_is_private(rhel_host: LinuxSandbox, script: str) -> None:
    result = run(rhel_host, script, "/opt/patching")

    assert result.returncode == 0, result.stderr
    assert mode(rhel_host.server_path("/opt/patching")) == 0o700
    assert mode(rhel_host.server_path(f"/opt/patching/{CHANGE}")) == 0o700


def test_a_directory_anyone_may_rename_into_above_the_workdir_is_refused(
    rhel_host: LinuxSandbox,
) -> None:
    rhel_host.server_path("/srv/ops/work").mkdir(parents=True)
    rhel_host.server_path("/srv/ops").chmod(0o777)  # no sticky bit: anyone can swap "work"

    result = run(rhel_host, "linux/qc.sh", "/srv/ops/work")

    assert result.returncode == 2
    assert "/srv/ops is writable by every user without the sticky bit" in result.stderr
    assert not rhel_host.server_path(f"/srv/ops/work/{CHANGE}").exists()


@needs_root
@pytest.mark.parametrize("script", WRITERS)
@pytest.mark.parametrize("whose", ["workdir", "change folder"])
def test_a_folder_of_another_user_is_refused(
    rhel_host: LinuxSandbox, script: str, whose: str
) -> None:
    folder = rhel_host.server_path(f"/srv/work/{CHANGE}")
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder if whose == "change folder" else folder.parent, 65534, 65534)

    result = run(rhel_host, script, "/srv/work")

    assert result.returncode == 2
    assert "belongs to uid 65534" in result.stderr
    assert list(folder.iterdir()) == []


def test_collecting_refuses_a_report_that_is_a_link_to_another_file(
    rhel_host: LinuxSandbox,
) -> None:
    secret = rhel_host.write("/etc/shadow", "root:$6$secret-hash:19000:0:99999:7:::\n")
    folder = rhel_host.server_path(f"/root/{CHANGE}")
    folder.mkdir(parents=True, mode=0o700)
    (folder / "qc_report.txt").symlink_to(secret)

    result = rhel_host.run("linux/collect_prep_reports.sh", {"CHANGE_NUMBER": CHANGE})

    assert result.returncode == 2
    assert f"/root/{CHANGE}/qc_report.txt is a symbolic link" in result.stderr
    assert "secret-hash" not in result.stdout + result.stderr


def test_no_message_suggests_a_shared_temporary_directory() -> None:
    from flows.linux_patching.workdir import check_workdir

    assert "/var/tmp" not in (check_workdir("relative/dir") or "")
    for script in [*WRITERS, "linux/collect_prep_reports.sh"]:
        assert "/var/tmp" not in load_script(script)


@pytest.mark.parametrize("script", ["linux/sft_install.sh", "linux/sft_reset.sh"])
@pytest.mark.parametrize("folder", ["/var/lib/sftd", "/etc/sft"])
def test_the_agent_scripts_refuse_a_token_or_config_folder_that_is_a_link(
    tmp_path: Path, script: str, folder: str
) -> None:
    host = FakeHost(tmp_path / "host", "rhel")
    if script.endswith("reset.sh"):
        assert host.run("linux/sft_install.sh", {TOKEN_FILE_CONTENT: TOKEN}).returncode == 0
        host.file(folder).rename(host.file(folder + ".real"))
    elsewhere = host.file("/tmp/collected")
    elsewhere.mkdir(parents=True)
    host.file(folder).parent.mkdir(parents=True, exist_ok=True)
    host.file(folder).symlink_to(elsewhere)

    result = host.run(script, {TOKEN_FILE_CONTENT: TOKEN})

    assert result.returncode == 2
    assert f"{folder} is a symbolic link" in result.stderr
    assert result.last_line == "SFT_ACTION_RESULT=failed:unsafe_directory"
    assert list(elsewhere.iterdir()) == []
