"""Shell injection through the fields of every flow that reach a remote script, for the fields
``test_script_injection.py`` (run-script parameters, change numbers) and
``tests/flows/test_prep_flow.py`` (prep change number, kernels, work directory, patcher URL) do
not cover.

A field with a fixed form (change number, kernel, work directory, patcher switches and
checksum, disk threshold, bundled script name, interpreter, instance id, account, region) is
refused before any AWS call, with a message naming the field. The one free-text value a flow
hands to a script besides run-script's parameters, the SFT enrollment token, goes through the
AWS path for real (a per-run Parameter Store parameter the instance reads with its AWS CLI)
and runs in the emulator's sandbox: it must reach the host byte for byte and run nothing.
Every hostile value tries to create a marker file (by absolute path under the test's
directory, or relative to wherever it runs); the test then looks for any such file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.exceptions import ParameterTypeError
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows import linux_qc_patching_post, linux_qc_patching_prep, run_script, sft_fixer
from flows.linux_patching.post.parameters import PostParameterError
from flows.linux_patching.prep.parameters import PrepParameterError
from flows.sft.result import SftVerdict
from providers.base import ResultStatus, Target
from tests.flows.sft.hosts import SftHost
from tests.reliability.fleet import CALLER_ACCOUNT, build_fleet
from tests.ssm_emulator import SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

MARKER = "pwned"
CHANGE = "CHG0088001"
KERNEL = "4.18.0-553.45.1.el8_10"
REGION = "us-east-1"


@pytest.fixture(autouse=True)
def no_flow_heartbeats() -> Iterator[None]:
    """Most runs here are refused at once; Prefect's heartbeat thread, which sleeps in whole
    seconds, would hold each of them up to a second while it stops. Nothing here needs it."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def hostile_values(mark: Path) -> list[str]:
    """Values that would create ``mark`` (or ``pwned`` where they run) if a script spliced them
    in instead of quoting them, or that would climb out of a directory."""
    return [
        f"$(touch {mark})",
        f"`touch {mark}`",
        f"; touch {mark}",
        f"'; touch {mark}; '",
        f'"; touch {mark}; "',
        f"x\ntouch {mark}",
        f"&& touch {mark} #",
        f"| touch {MARKER}",
        f"../../{MARKER}",
    ]


def planted(root: Path) -> list[Path]:
    """Marker files under ``root`` and in the working directory of the test process."""
    return [*root.rglob(f"{MARKER}*"), *Path.cwd().glob(f"{MARKER}*")]


def ssm_calls(world: SsmWorld) -> list[str]:
    return [f"{r.service}:{r.operation}" for r in world.requests]


# --- linux-qc-patching-post -----------------------------------------------------------------------


@pytest.mark.parametrize("index", range(9))
def test_post_refuses_every_hostile_field_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, index: int
) -> None:
    hostile = hostile_values(tmp_path / MARKER)[index]
    targets = build_fleet(ssm_world, 1)

    with pytest.raises(PostParameterError, match="nothing was sent") as refused:
        linux_qc_patching_post(
            change_number=f"CHG1{hostile}",
            instances=targets,
            provider=fast_aws,
            target_kernel=f"{KERNEL}{hostile}",
            workdir=f"/root/{hostile}",
        )

    problems = refused.value.problems
    # One problem per field: each field is refused on its own account, not by luck.
    assert [p.split(" ", 1)[0].rstrip(":") for p in problems] == [
        "change_number",
        "workdir",
        "target_kernel",
    ]
    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []


# --- linux-qc-patching-prep -----------------------------------------------------------------------


# The patcher's switches are arguments, split on spaces and never evaluated: a relative path
# such as ../../pwned is a legitimate argument, so only the shell syntax is tried here.
@pytest.mark.parametrize("index", range(8))
def test_prep_refuses_hostile_patcher_switches_and_checksum_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, index: int
) -> None:
    hostile = hostile_values(tmp_path / MARKER)[index]
    assert hostile != f"../../{MARKER}"
    targets = build_fleet(ssm_world, 1)

    with pytest.raises(PrepParameterError, match="nothing was sent") as refused:
        linux_qc_patching_prep(
            change_number=CHANGE,
            instances=targets,
            provider=fast_aws,
            qc_engine="linux-patcher",
            patcher_url="https://tools.example.com/linux_patcher.sh",
            patcher_args=f"-q {hostile}",
            patcher_sha256=f"{'a' * 64}{hostile}",
        )

    problems = refused.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("patcher_args ") and problems[1].startswith("patcher_sha256 ")
    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []


@pytest.mark.parametrize(
    ("value", "refusal"),
    [
        ("3; touch pwned", ParameterTypeError),
        ("$(touch pwned)", ParameterTypeError),
        ("3\ntouch pwned", ParameterTypeError),
        (0, PrepParameterError),
        (10_001, PrepParameterError),
    ],
)
def test_prep_refuses_a_disk_threshold_that_is_not_a_whole_number_of_gb(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, value: object, refusal: type[Exception]
) -> None:
    targets = build_fleet(ssm_world, 1)

    with pytest.raises(refusal, match="min_var_free_gb"):
        linux_qc_patching_prep(
            change_number=CHANGE, instances=targets, provider=fast_aws, min_var_free_gb=value
        )

    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []


# --- run-script ---------------------------------------------------------------------------------

SCRIPT_NAMES = [
    "../../etc/passwd",
    "linux/../../../etc/passwd",
    "/etc/passwd",
    "linux/qc.sh/../../../../etc/shadow",
    "linux/./qc.sh",
    "linux//qc.sh",
    "linux/qc.sh; touch pwned",
    "linux/qc.sh$(touch pwned)",
    "linux/qc.sh\ntouch pwned",
    "linux/qc.sh\0",
    "linux/missing.sh",
]


@pytest.mark.parametrize("script_name", SCRIPT_NAMES)
def test_run_script_refuses_a_script_name_outside_the_bundle_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, script_name: str
) -> None:
    targets = build_fleet(ssm_world, 1)

    # The parameter is a choice of the bundled scripts: Prefect refuses anything else before
    # the flow starts, and says what the choices are.
    with pytest.raises(ParameterTypeError, match="script_name") as refused:
        run_script(script_name=script_name, targets=targets, provider=fast_aws)

    assert "linux/qc.sh" in str(refused.value)
    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []


@pytest.mark.parametrize("interpreter", ["bash; touch pwned", "bash\ntouch pwned", "/bin/sh", ""])
def test_run_script_refuses_an_interpreter_it_does_not_know_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, interpreter: str
) -> None:
    targets = build_fleet(ssm_world, 1)

    with pytest.raises(ParameterTypeError, match="interpreter"):
        run_script(script="true", interpreter=interpreter, targets=targets, provider=fast_aws)

    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []


def test_run_script_sends_nothing_to_hostile_instance_fields_and_never_puts_a_name_in_a_script(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path
) -> None:
    [good] = build_fleet(ssm_world, 1)
    ssm_world.command_delay(pending=0.05)
    named = good.model_copy(update={"name": f"web-01$(touch {tmp_path / MARKER})"})
    bad_id = Target(instance_id=f"{good.instance_id};touch {MARKER}", account_id=CALLER_ACCOUNT)
    bad_account = good.model_copy(
        update={"instance_id": "i-0123456789abcdef0", "account_id": f";touch {MARKER}"}
    )
    bad_region = good.model_copy(
        update={"instance_id": "i-0123456789abcdef1", "region": f"us-east-1$(touch {MARKER})"}
    )

    result = run_script(
        script='printf "%s\\n" "$AWS_SSM_INSTANCE_ID"',
        targets=[named, bad_id, bad_account, bad_region],
        provider=fast_aws,
    )

    by_id = {r.instance_id: r for r in result.batch.results}
    assert by_id[good.instance_id].status is ResultStatus.SUCCESS
    for target in (bad_id, bad_account, bad_region):
        refused = by_id[target.instance_id]
        assert refused.status is ResultStatus.ERROR and refused.command_id is None
        assert "correct the target list" in (refused.error or "")
    # One command, to the good instance only; the name went nowhere near it.
    [command] = ssm_world.commands
    assert command.instance_ids == [good.instance_id]
    assert MARKER not in command.script and MARKER not in command.comment
    assert planted(tmp_path) == []


# --- sft-fixer ------------------------------------------------------------------------------------


def hostile_tokens(mark: Path) -> list[str]:
    """Enrollment tokens the flow accepts (no spaces or line breaks, 16 characters or more) that
    would create ``mark`` if a script spliced them in: substitutions, broken quotes, and shell
    operators, with ``${IFS}`` for the spaces a token may not hold."""
    touch = f"touch${{IFS}}{mark}"
    return [
        f"tok-$({touch})-`{touch}`-$(<{mark})-end",
        f"tok-';{touch};'-\";{touch};\"-\\';{touch};#-end",
        f"tok-;{touch}|{touch}&&{touch}>{MARKER}<x${{PATH}}%s%n$'\\x41'-end",
    ]


@pytest.fixture
def never_enrolling_host(ssm_world: SsmWorld) -> SftHost:
    """An enrolled RHEL host with the agent stopped, whose agent never enrolls again: after a
    reset its enrollment token file stays, so the test can read what reached it."""
    instance = ssm_world.add_instance(account_id=CALLER_ACCOUNT, region=REGION, name="sft-01")
    return SftHost(instance, FAKE_SFTD_ENROLLS="0").bring_to("stopped")


@pytest.mark.parametrize("index", range(3))
def test_sft_token_with_shell_syntax_reaches_the_host_byte_for_byte_and_runs_nothing(
    ssm_world: SsmWorld,
    fast_aws: str,
    tmp_path: Path,
    never_enrolling_host: SftHost,
    monkeypatch: pytest.MonkeyPatch,
    index: int,
) -> None:
    monkeypatch.delenv("SFT_ENROLLMENT_TOKEN", raising=False)
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_BLOCKS", "injection-sft-token")
    ssm_world.command_delay(pending=0.05)
    token = hostile_tokens(tmp_path / MARKER)[index]
    target = never_enrolling_host.target.model_copy(update={"name": f"sft-01;touch {MARKER}"})
    Secret(value=token).save("injection-sft-token", overwrite=True)
    try:
        result = sft_fixer(
            instances=[target],
            action="reset",
            provider=fast_aws,
            token_block="injection-sft-token",
            verify_attempts=1,
            verify_delay_seconds=0,
        )
    finally:
        Secret.delete("injection-sft-token")

    # The reset ran (then the agent, as built, did not enroll) ...
    [outcome] = result.outcomes
    assert outcome.verdict is SftVerdict.FAILED and "not enrolled" in outcome.reason
    # ... and wrote the token as given, as data.
    written = never_enrolling_host.file("/var/lib/sftd/enrollment.token").read_bytes()
    assert written == token.encode() + b"\n"
    assert planted(tmp_path) == []
    # The instance's name is not in any script sent.
    assert ssm_world.commands and all(target.name not in c.script for c in ssm_world.commands)


@pytest.mark.parametrize(
    ("instances", "refusal"),
    [
        ([Target(instance_id="i-0123456789abcdef0;touch pwned", account_id=CALLER_ACCOUNT)], "EC2"),
        ([Target(instance_id="i-0123456789abcdef0", account_id=";touch pwned")], "12 digits"),
        (
            [
                Target(
                    instance_id="i-0123456789abcdef0",
                    account_id=CALLER_ACCOUNT,
                    region="`touch pwned`",
                )
            ],
            "region",
        ),
        ("CHG1; touch pwned", "not a valid change number"),
        ("../../etc/passwd", "not a valid change number"),
    ],
)
def test_sft_refuses_hostile_instances_before_any_call(
    ssm_world: SsmWorld, fast_aws: str, tmp_path: Path, instances: object, refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        sft_fixer(instances=instances, action="detect", provider=fast_aws)

    assert ssm_calls(ssm_world) == []
    assert planted(tmp_path) == []
