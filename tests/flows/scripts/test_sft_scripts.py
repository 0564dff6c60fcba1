"""The SFT agent scripts run for real on fake hosts built in a sandbox.

A fake host is a sandbox directory (``$CLOUDOPS_ROOT``) plus a PATH that holds only a few real
base tools and the fake commands of ``sft_fakes/`` that its distribution would have
(``systemctl``, ``dnf``/``yum`` + ``rpm`` or ``apt-get`` + ``dpkg-query``, ``curl``, ``gpg``,
``ip``, ``hostname``). The fakes record their calls and change the sandbox as the real commands
change a host; the fake ``systemctl`` also plays the agent, which enrolls on start.

Every run checks that the enrollment token shows in no output, no command line and no
environment of a command the script started.

The Windows scripts are not executed here (no PowerShell on this machine); their markers are
checked against the parser, and the parser is tested on Windows sample output.
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.common.remote_scripts import load_script, render_script
from flows.parsers import SftActionOutcome, SftNeed, parse_sft_action_result, parse_sft_detection

FAKES = Path(__file__).parent / "sft_fakes"
BASE_TOOLS = ("cat", "chmod", "dirname", "grep", "mkdir", "mktemp", "mv", "readlink", "rm", "sed")
BASE_TOOLS += ("touch", "wc", "id", "stat")  # id, stat: the folder checks of lib/change_folder.sh
BASH = shutil.which("bash")
TOKEN = "eyJ0ZWFtIjoiY2xvdWRvcHMifQ.S3cr3tEnr0llm3ntT0ken-for-tests_only"
ADDRESS = "10.20.30.40"
KEYRING_LINE = "deb [signed-by=/usr/share/keyrings/scaleft-archive-keyring.gpg]"

OS_RELEASE = {
    "rhel": 'NAME="Red Hat Enterprise Linux"\nVERSION="8.10 (Ootpa)"\nID="rhel"\n'
    'ID_LIKE="fedora"\nVERSION_ID="8.10"\nPRETTY_NAME="Red Hat Enterprise Linux 8.10 (Ootpa)"\n',
    "amzn": 'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nID_LIKE="fedora"\n'
    'VERSION_ID="2023"\nPRETTY_NAME="Amazon Linux 2023.4.20240416"\n',
    "bookworm": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    "jammy": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
    'VERSION="22.04.4 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
    "ID_LIKE=debian\nUBUNTU_CODENAME=jammy\n",
    # Ubuntu 16.04 predates VERSION_CODENAME: only UBUNTU_CODENAME names the release.
    "xenial": 'NAME="Ubuntu"\nVERSION="16.04.7 LTS (Xenial Xerus)"\nID=ubuntu\nID_LIKE=debian\n'
    'VERSION_ID="16.04"\nUBUNTU_CODENAME=xenial\n',
    "no_codename": 'NAME="Debian GNU/Linux"\nID=debian\nPRETTY_NAME="Debian GNU/Linux"\n',
    "suse": 'NAME="openSUSE Leap"\nVERSION="15.5"\nID="opensuse-leap"\n'
    'ID_LIKE="suse opensuse"\nVERSION_ID="15.5"\n',
}
FAMILY_TOOLS = {
    "rpm": ("dnf", "yum", "rpm"),
    "deb": ("apt-get", "dpkg-query", "curl", "gpg"),
}
COMMON_TOOLS = ("systemctl", "ip", "hostname")
READ_ONLY_CALLS = ("ip -4 route get", "hostname -I", "rpm -q", "dpkg-query", "systemctl is-active")
READ_ONLY_CALLS += ("aws ssm get-parameter", "aws secretsmanager get-secret-value")


def _family(distro: str) -> str:
    return "rpm" if distro in {"rhel", "amzn", "suse"} else "deb"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stdout.strip().splitlines()[-1]


class FakeHost:
    """A sandboxed Linux host of one distribution, on which the bundled scripts run."""

    def __init__(self, base: Path, distro: str, without: tuple[str, ...] = ()) -> None:
        self.base = base
        self.root = base / "root"
        self.bin = base / "bin"
        self.calls_log = base / "calls.log"
        self.secrets = base / "aws-secrets"  # what the fake aws answers, one file per name
        self.secrets.mkdir(parents=True)
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "os-release").write_text(OS_RELEASE[distro])
        self.bin.mkdir()
        for tool in BASE_TOOLS:
            real = shutil.which(tool)
            assert real, f"base tool {tool} is missing on this machine"
            (self.bin / tool).symlink_to(real)
        for fake in COMMON_TOOLS + FAMILY_TOOLS[_family(distro)] + ("aws",):
            if fake not in without:
                (self.bin / fake).symlink_to(FAKES / fake)
        self.calls_log.touch()

    def run(self, script: str, params: dict[str, str] | None = None, **fake_env: str) -> Run:
        """Run a bundled script with its quoted parameter header, as the flow sends it. A
        token given with ``_token`` is written to a file the script is told to read."""
        params = dict(params or {})
        if TOKEN_FILE_CONTENT in params:
            token_file = self.base / "enrollment-token"
            token_file.write_text(params.pop(TOKEN_FILE_CONTENT) + "\n")
            params.update(SFT_TOKEN_SOURCE="file", SFT_TOKEN_NAME=str(token_file))
        path = self.base / "script.sh"
        path.write_text(render_script(load_script(script), params))
        env = {
            "PATH": str(self.bin),
            "CLOUDOPS_ROOT": str(self.root),
            "FAKE_CALLS_LOG": str(self.calls_log),
            "FAKE_AWS_SECRETS": str(self.secrets),
            "LANG": "C",
            **fake_env,
        }
        done = subprocess.run(
            [BASH, str(path)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        self.assert_token_kept_secret(done.stdout, done.stderr)
        return Run(done.returncode, done.stdout, done.stderr)

    def assert_token_kept_secret(self, stdout: str, stderr: str) -> None:
        assert TOKEN not in stdout
        assert TOKEN not in stderr
        assert TOKEN not in self.calls_log.read_text(), "the token was on a command line"
        environments = self.calls_log.with_name("calls.log.environments")
        if environments.exists():
            assert TOKEN not in environments.read_text(), "a command inherited the token"

    def keep_secret(self, name: str, value: str) -> None:
        """A parameter or secret ``name`` holding ``value``, for the fake ``aws`` to answer."""
        (self.secrets / name.replace("/", "%")).write_text(value + "\n")

    def calls(self) -> list[str]:
        return self.calls_log.read_text().splitlines()

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def mode(self, path: str) -> int:
        return stat.S_IMODE(self.file(path).stat().st_mode)

    def snapshot(self) -> dict[str, tuple[int, bytes]]:
        """Every file and directory of the host with its mode and content, and every call of a
        command that could change the host (looking up the address or a package cannot)."""
        changing = [c for c in self.calls() if not c.startswith(READ_ONLY_CALLS)]
        seen: dict[str, tuple[int, bytes]] = {"<calls>": (0, "\n".join(changing).encode())}
        for item in sorted(self.root.rglob("*")):
            content = item.read_bytes() if item.is_file() else b""
            seen[str(item.relative_to(self.root))] = (item.stat().st_mode, content)
        return seen

    def service(self, state: str) -> bool:
        return (self.root / "run" / "fake-systemd" / f"sftd.{state}").exists()

    def stop_agent_behind_our_back(self) -> None:
        (self.root / "run" / "fake-systemd" / "sftd.active").unlink()

    def enrollments(self) -> list[str]:
        log = self.file("/var/log/fake-sftd.log")
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def host(tmp_path: Path):
    """A factory of fake hosts: ``host("rhel")``, ``host("jammy", without=("ip",))``."""
    count = 0

    def make(distro: str, without: tuple[str, ...] = ()) -> FakeHost:
        nonlocal count
        count += 1
        return FakeHost(tmp_path / f"host{count}", distro, without)

    return make


# A parameter key no script reads: FakeHost.run writes its value to the file the script reads.
TOKEN_FILE_CONTENT = "token file content"


def _token(value: str = TOKEN) -> dict[str, str]:
    return {TOKEN_FILE_CONTENT: value}


def _installed(host: FakeHost) -> None:
    result = host.run("linux/sft_install.sh", _token())
    assert result.returncode == 0, result.stderr


# --- detect ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("distro", "label"), [("rhel", "rhel 8.10"), ("jammy", "ubuntu 22.04")])
def test_detect_on_a_host_without_the_agent(host, distro: str, label: str) -> None:
    fake = host(distro)

    result = fake.run("linux/sft_detect.sh")

    assert result.returncode == 0, result.stderr
    assert "SFT_INSTALLED=no" in result.stdout.splitlines()
    state = parse_sft_detection(result.stdout)
    assert state.installed is False
    assert state.status == "not_installed"
    assert state.linux_distro == label
    assert state.platform == "linux"
    assert state.needs is SftNeed.INSTALL
    assert state.error is None


def test_detect_without_systemd_says_the_state_is_unknown(host) -> None:
    fake = host("rhel")
    _installed(fake)
    (fake.bin / "systemctl").unlink()

    state = parse_sft_detection(fake.run("linux/sft_detect.sh").stdout)

    assert state.installed is True
    assert state.agent_type == "rpm"
    assert state.status == "unknown"


# --- install -----------------------------------------------------------------------------------


@pytest.mark.parametrize("distro", ["rhel", "amzn"])
def test_install_on_a_rhel_family_host(host, distro: str) -> None:
    fake = host(distro)

    # The agent is held back from enrolling so the token file can be inspected as written.
    result = fake.run("linux/sft_install.sh", _token(), FAKE_SFTD_ENROLLS="0")

    assert result.returncode == 0, result.stderr
    assert result.last_line == "SFT_ACTION_RESULT=installed"
    repo = fake.file("/etc/yum.repos.d/scaleft.repo").read_text()
    assert "baseurl=https://pkg.scaleft.com/rpm\n" in repo
    assert "gpgcheck=1\n" in repo
    assert "gpgkey=https://dist.scaleft.com/pki/scaleft_rpm_key.asc\n" in repo
    assert fake.mode("/etc/yum.repos.d/scaleft.repo") == 0o644
    calls = fake.calls()
    assert "rpm --import https://dist.scaleft.com/pki/scaleft_rpm_key.asc" in calls
    assert "dnf -y -q install scaleft-server-tools" in calls  # dnf preferred over yum
    assert fake.file("/var/lib/sftd/enrollment.token").read_text() == TOKEN + "\n"
    assert fake.mode("/var/lib/sftd/enrollment.token") == 0o600
    config = fake.file("/etc/sft/sftd.yaml").read_text()
    assert config == f'---\nAccessAddress: "{ADDRESS}"\n'
    assert fake.mode("/etc/sft/sftd.yaml") == 0o644
    assert fake.service("enabled") and fake.service("active")


def test_install_falls_back_to_yum_without_dnf(host) -> None:
    fake = host("rhel", without=("dnf",))

    result = fake.run("linux/sft_install.sh", _token())

    assert result.returncode == 0, result.stderr
    assert "yum -y -q install scaleft-server-tools" in fake.calls()


@pytest.mark.parametrize("codename", ["bookworm", "jammy", "xenial"])
def test_install_on_a_debian_family_host_uses_its_own_release(host, codename: str) -> None:
    fake = host(codename)

    result = fake.run("linux/sft_install.sh", _token(), FAKE_SFTD_ENROLLS="0")

    assert result.returncode == 0, result.stderr
    assert result.last_line == "SFT_ACTION_RESULT=installed"
    sources = fake.file("/etc/apt/sources.list.d/scaleft.list").read_text()
    assert sources == f"{KEYRING_LINE} https://pkg.scaleft.com/deb {codename} main\n"
    keyring = fake.file("/usr/share/keyrings/scaleft-archive-keyring.gpg").read_text()
    assert keyring.startswith("FAKE-DEARMORED\n")
    assert "https://dist.scaleft.com/pki/scaleft_deb_key.asc" in keyring
    # apt reads keyrings as the unprivileged _apt user.
    assert fake.mode("/usr/share/keyrings/scaleft-archive-keyring.gpg") == 0o644
    assert fake.mode("/usr/share/keyrings") == 0o755
    installs = [c for c in fake.calls() if c.startswith("apt-get") and " install " in c]
    assert len(installs) == 1 and installs[0].endswith(" scaleft-server-tools")
    assert fake.file("/var/lib/sftd/enrollment.token").read_text() == TOKEN + "\n"
    assert fake.mode("/var/lib/sftd/enrollment.token") == 0o600
    assert f'AccessAddress: "{ADDRESS}"' in fake.file("/etc/sft/sftd.yaml").read_text()
    assert fake.service("enabled") and fake.service("active")


def test_install_uses_the_repository_parameters(host) -> None:
    fake = host("jammy")
    params = {
        **_token(),
        "SFT_APT_REPO_URL": "https://mirror.example.internal/scaleft/deb",
        "SFT_GPG_KEY_URL": "https://mirror.example.internal/scaleft/key.asc",
    }

    result = fake.run("linux/sft_install.sh", params)

    assert result.returncode == 0, result.stderr
    sources = fake.file("/etc/apt/sources.list.d/scaleft.list").read_text()
    assert sources == f"{KEYRING_LINE} https://mirror.example.internal/scaleft/deb jammy main\n"
    assert "curl -fsSL --proto =https https://mirror.example.internal/scaleft/key.asc" in (
        fake.calls()
    )


def test_install_then_detect_reports_a_healthy_agent(host) -> None:
    fake = host("bookworm")
    _installed(fake)

    state = parse_sft_detection(fake.run("linux/sft_detect.sh").stdout)

    assert state.installed is True
    assert state.agent_type == "deb"
    assert state.status == "running"
    assert state.device_token_present is True
    # The agent consumed its enrollment token when it enrolled, as the real one does.
    assert state.enrollment_token_present is False
    assert state.config_present is True
    assert state.healthy
    assert state.needs is SftNeed.NOTHING


def test_install_takes_the_address_from_hostname_without_a_route(host) -> None:
    fake = host("rhel")

    result = fake.run(
        "linux/sft_install.sh",
        _token(),
        FAKE_NO_ROUTE="1",
        FAKE_HOSTNAME_ADDRESSES="fe80::1 172.31.5.6 10.0.0.9",
    )

    assert result.returncode == 0, result.stderr
    assert 'AccessAddress: "172.31.5.6"' in fake.file("/etc/sft/sftd.yaml").read_text()


def test_install_reports_a_service_that_does_not_start(host) -> None:
    fake = host("rhel")

    result = fake.run("linux/sft_install.sh", _token(), FAKE_SYSTEMCTL_START_FAILS="1")

    assert result.returncode == 1
    assert result.last_line == "SFT_ACTION_RESULT=failed:service_start_failed"
    assert "journalctl -u sftd" in result.stderr
    outcome = parse_sft_action_result(result.stdout)
    assert outcome.outcome is SftActionOutcome.FAILED
    assert not outcome.succeeded


def test_install_reports_a_package_that_cannot_be_installed(host) -> None:
    fake = host("jammy")

    result = fake.run("linux/sft_install.sh", _token(), FAKE_PACKAGE_INSTALL_FAILS="1")

    assert result.returncode == 1
    assert result.last_line == "SFT_ACTION_RESULT=failed:package_install_failed"
    assert "Unable to locate package" in result.stderr
    assert not fake.service("active")


# --- reset -------------------------------------------------------------------------------------


@pytest.mark.parametrize("distro", ["rhel", "jammy"])
def test_reset_re_enrolls_a_stopped_agent(host, distro: str) -> None:
    fake = host(distro)
    _installed(fake)
    assert fake.file("/var/lib/sftd/device.token").read_text() == "device-1\n"
    fake.file("/etc/sft/sftd.yaml").write_text(
        '---\nCanonicalName: web01\nAccessAddress: "192.0.2.1"\nAltNames: ["web01.corp"]\n'
    )
    fake.stop_agent_behind_our_back()
    before = parse_sft_detection(fake.run("linux/sft_detect.sh").stdout)
    assert before.needs is SftNeed.RESET
    calls_before = len(fake.calls())

    result = fake.run("linux/sft_reset.sh", _token())

    assert result.returncode == 0, result.stderr
    assert result.last_line == "SFT_ACTION_RESULT=reset"
    assert parse_sft_action_result(result.stdout).succeeded
    systemctl = [c for c in fake.calls()[calls_before:] if c.startswith("systemctl")]
    assert systemctl.index("systemctl stop sftd") < systemctl.index("systemctl start sftd")
    # The agent enrolled again on start, which it does only when its device token is gone.
    assert fake.enrollments() == ["enrolled generation 1", "enrolled generation 2"]
    assert fake.file("/var/lib/sftd/device.token").read_text() == "device-2\n"
    assert fake.file("/etc/sft/sftd.yaml").read_text() == (
        f'---\nCanonicalName: web01\nAltNames: ["web01.corp"]\nAccessAddress: "{ADDRESS}"\n'
    )
    after = parse_sft_detection(fake.run("linux/sft_detect.sh").stdout)
    assert after.healthy
    assert after.needs is SftNeed.NOTHING


def test_reset_writes_the_token_with_mode_600(host) -> None:
    fake = host("rhel")
    _installed(fake)

    result = fake.run("linux/sft_reset.sh", _token(), FAKE_SFTD_ENROLLS="0")

    assert result.returncode == 0, result.stderr
    assert not fake.file("/var/lib/sftd/device.token").exists()
    assert fake.file("/var/lib/sftd/enrollment.token").read_text() == TOKEN + "\n"
    assert fake.mode("/var/lib/sftd/enrollment.token") == 0o600
    assert fake.service("enabled") and fake.service("active")


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("parameter-store", "/cloudops-flows/sft-enrollment-token/0b6f4c1e"),
        ("secrets-manager", "arn:aws:secretsmanager:us-east-1:111111111111:secret:sft-Ab12"),
    ],
)
def test_the_token_is_read_where_the_flow_says_as_the_instance(
    host, source: str, name: str
) -> None:
    fake = host("rhel")
    fake.keep_secret(name, TOKEN)

    result = fake.run(
        "linux/sft_install.sh",
        {"SFT_TOKEN_SOURCE": source, "SFT_TOKEN_NAME": name},
        AWS_SSM_REGION_NAME="us-east-1",
        FAKE_SFTD_ENROLLS="0",  # the token file stays for the test to read
    )

    assert result.returncode == 0, result.stderr
    assert fake.file("/var/lib/sftd/enrollment.token").read_text() == TOKEN + "\n"
    [read] = [c for c in fake.calls() if c.startswith("aws ")]
    assert name in read and "--region us-east-1" in read and "--output text" in read


@pytest.mark.parametrize("script", ["linux/sft_install.sh", "linux/sft_reset.sh"])
def test_a_token_the_instance_cannot_read_refuses_before_changing_anything(
    host, script: str
) -> None:
    fake = host("rhel")
    _installed(fake)
    before = fake.snapshot()

    result = fake.run(
        script, {"SFT_TOKEN_SOURCE": "parameter-store", "SFT_TOKEN_NAME": "/cloudops-flows/gone"}
    )

    assert result.returncode == 2
    assert result.last_line == "SFT_ACTION_RESULT=failed:token_unreadable"
    assert "ParameterNotFound" in result.stderr and "kms:Decrypt" in result.stderr
    assert fake.snapshot() == before


def test_without_the_aws_cli_parameter_store_is_refused(host) -> None:
    fake = host("rhel", without=("aws",))

    result = fake.run(
        "linux/sft_install.sh",
        {"SFT_TOKEN_SOURCE": "parameter-store", "SFT_TOKEN_NAME": "/cloudops-flows/x"},
    )

    assert result.returncode == 2
    assert result.last_line == "SFT_ACTION_RESULT=failed:no_aws_cli"


def test_a_token_file_that_is_a_link_is_not_followed(host, tmp_path: Path) -> None:
    fake = host("rhel")
    planted = tmp_path / "someone-elses-file"
    planted.write_text(TOKEN + "\n")
    link = tmp_path / "token-link"
    link.symlink_to(planted)

    result = fake.run(
        "linux/sft_install.sh", {"SFT_TOKEN_SOURCE": "file", "SFT_TOKEN_NAME": str(link)}
    )

    assert result.returncode == 2
    assert result.last_line == "SFT_ACTION_RESULT=failed:token_unreadable"
    assert not fake.file("/var/lib/sftd/enrollment.token").exists()


# --- refusals: nothing on the host changes ------------------------------------------------------


@pytest.mark.parametrize("script", ["linux/sft_install.sh", "linux/sft_reset.sh"])
@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, "missing_enrollment_token"),
        (_token(""), "missing_enrollment_token"),
        (_token(TOKEN + "\nAutoEnroll: false"), "invalid_enrollment_token"),
    ],
    ids=["absent", "empty", "with-a-line-break"],
)
def test_no_usable_token_refuses_before_changing_anything(
    host, script: str, params: dict[str, str], reason: str
) -> None:
    fake = host("rhel")
    _installed(fake)
    before = fake.snapshot()

    result = fake.run(script, params)

    assert result.returncode == 2
    assert result.last_line == f"SFT_ACTION_RESULT=failed:{reason}"
    assert "Nothing was changed" in result.stderr
    assert fake.snapshot() == before


@pytest.mark.parametrize(
    ("distro", "params", "fake_env", "reason"),
    [
        ("no_codename", {}, {}, "no_release_codename"),
        ("suse", {}, {}, "unsupported_distribution"),
        ("rhel", {}, {"FAKE_NO_ROUTE": "1", "FAKE_HOSTNAME_ADDRESSES": ""}, "no_primary_ipv4"),
        ("rhel", {"SFT_YUM_REPO_URL": "http://pkg.scaleft.com/rpm"}, {}, "invalid_parameter"),
        ("jammy", {"SFT_GPG_KEY_URL": "https://x/key\ngpgcheck=0"}, {}, "invalid_parameter"),
    ],
    ids=["no-codename", "unsupported", "no-address", "plain-http", "line-break-in-url"],
)
def test_install_refuses_a_host_it_cannot_serve(
    host, distro: str, params: dict[str, str], fake_env: dict[str, str], reason: str
) -> None:
    fake = host(distro)
    before = fake.snapshot()

    result = fake.run("linux/sft_install.sh", {**_token(), **params}, **fake_env)

    assert result.returncode == 2
    assert result.last_line == f"SFT_ACTION_RESULT=failed:{reason}"
    assert fake.snapshot() == before
    assert parse_sft_action_result(result.stdout).reason == reason


def test_install_refuses_without_systemd(host) -> None:
    fake = host("rhel", without=("systemctl",))
    before = fake.snapshot()

    result = fake.run("linux/sft_install.sh", _token())

    assert result.returncode == 2
    assert result.last_line == "SFT_ACTION_RESULT=failed:no_systemd"
    assert fake.snapshot() == before


def test_reset_refuses_a_host_without_the_agent(host) -> None:
    fake = host("jammy")
    before = fake.snapshot()

    result = fake.run("linux/sft_reset.sh", _token())

    assert result.returncode == 2
    assert result.last_line == "SFT_ACTION_RESULT=failed:not_installed"
    assert "run the install action" in result.stderr
    assert fake.snapshot() == before


# --- the scripts' text ---------------------------------------------------------------------------


def _function(script: str, name: str) -> str:
    match = re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", load_script(script), re.S | re.M)
    assert match, f"{script} has no function {name}"
    return match.group(0)


@pytest.mark.parametrize(
    ("name", "scripts"),
    [
        ("os_release_value", ("linux/sft_detect.sh", "linux/sft_install.sh")),
        ("agent_install_type", ("linux/sft_detect.sh", "linux/sft_reset.sh")),
        ("refuse", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("fail", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("check_enrollment_token", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("check_token_source", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("read_enrollment_token", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("primary_ipv4", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("write_enrollment_token", ("linux/sft_install.sh", "linux/sft_reset.sh")),
        ("write_agent_config", ("linux/sft_install.sh", "linux/sft_reset.sh")),
    ],
)
def test_scripts_that_travel_alone_carry_the_same_helpers(name: str, scripts: tuple) -> None:
    # Each script is sent to a host on its own, so shared helpers are copied, never sourced;
    # a fix to one copy must reach the others.
    first, *others = (_function(script, name) for script in scripts)
    for other in others:
        assert other == first


@pytest.mark.parametrize(
    "marker",
    [
        "SFT_PLATFORM",
        "SFT_INSTALLED",
        "SFT_TYPE",
        "SFT_STATUS",
        "SFT_ENROLLMENT_TOKEN",
        "SFT_DEVICE_TOKEN",
        "SFT_CONFIG",
        "WINDOWS_VERSION",
    ],
)
def test_windows_detection_prints_every_marker_the_parser_reads(marker: str) -> None:
    assert re.search(rf"Write-Output ['\"]{marker}=", load_script("windows/sft_detect.ps1"))


@pytest.mark.parametrize(
    "script",
    [
        "windows/sft_detect.ps1",
        "windows/sft_reset.ps1",
        "linux/sft_detect.sh",
        "linux/sft_install.sh",
        "linux/sft_reset.sh",
    ],
)
def test_no_script_prints_the_enrollment_token(script: str) -> None:
    printing = re.compile(r"\b(echo|printf|Write-Output|Write-Host|Write-Error|WriteLine)\b")
    for number, line in enumerate(load_script(script).splitlines(), start=1):
        if printing.search(line) and not line.lstrip().startswith("#"):
            redirected_to_file = re.search(r'>\s*"\$tmp"', line)
            mentions_token = re.search(r"\$(enrollment_token|enrollmentToken)\b", line)
            assert not mentions_token or redirected_to_file, f"{script}:{number}: {line}"


def test_windows_reset_refuses_before_its_first_change() -> None:
    text = load_script("windows/sft_reset.ps1")
    first_change = text.index("Stop-Service")
    refusals = ("missing_enrollment_token", "token_unreadable", "invalid_enrollment_token")
    for refusal in (*refusals, "not_installed"):
        assert text.index(f"Stop-Refused '{refusal}'") < first_change
    # The token is read by the script from where the flow put it, never given to it.
    assert "SFT_ENROLLMENT_TOKEN" not in text and "$env:SFT_TOKEN_NAME" in text
