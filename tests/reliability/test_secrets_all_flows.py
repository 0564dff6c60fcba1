"""No secret given to the flows is kept anywhere a person or a backup could read it.

One test runs every flow (validate-credentials twice, run-script, linux-qc-patching-prep,
linux-qc-patching-post, sft-fixer) on the SSM emulator with recognisable fake secrets:

- the legacy ``AWS_*_COM`` variables (a planted key id, secret key and session token);
- the legacy ``AWS_*_GOV`` variables (moto's key id of a commercial IAM user, which GovCloud
  refuses, so the refusal path runs too; a planted secret key and session token);
- an ``aws-provider`` block (moto's key id of an IAM user, a planted secret key, session token
  and external id, the last one required by the member account's role);
- the SFT enrollment token in a Prefect ``Secret`` block;
- and the temporary keys STS issued to the flows when they assumed the member account's role.

The test first proves each secret was used (the signature of the requests checked against the
secret key, the session token and external id seen on the wire, the enrollment token read by
the instances from the run's parameter, and redacted from what a leaky host printed back),
then scans: the commands SSM keeps (``ListCommands``: parameters and comment), the script files
the agent wrote on the instances, Parameter Store, the Prefect server's SQLite database (raw
bytes of the file and its journal, and every row), Prefect's home (result storage included),
the flow runs with their parameters, task runs, logs and artifacts through the API, the events
the flows emitted, our store (raw bytes and every row), the report files, and the flows' return
values and failure messages. Base64 runs inside any of them (pickled results) are decoded and
scanned as well. Zero hits.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import json
import lzma
import pickle
import re
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from moto.ssm.models import ssm_backends
from moto.sts.models import sts_backends
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.clients import AssertingPassthroughEventsClient
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler
from prefect.settings import (
    PREFECT_HOME,
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
)
from prefect.states import State
from prefect.testing.fixtures import asserting_and_emitting_events_worker  # noqa: F401
from pydantic import SecretStr

from blocks import AwsProviderBlock, registry
from blocks.aws import aws_provider_from_environment
from flows import linux_qc_patching_post, linux_qc_patching_prep, run_script, sft_fixer
from flows.credentials.flow import CredentialsRefusedError, validate_credentials
from flows.linux_patching.post_verdict import PostVerdict
from flows.linux_patching.prep.qc import QcVerdict
from flows.sft.result import SftVerdict
from flows.sft.token import REDACTED
from flows.store import Store
from providers.base import ResultStatus, Target
from tests.flows.linux_patching.post.test_flow import KERNEL_AFTER, STAGED, rhel_server
from tests.flows.sft.hosts import host as sft_host
from tests.reliability.aws_signatures import SignatureTap
from tests.ssm_emulator import Credentials, SsmWorld

pytestmark = pytest.mark.usefixtures("prefect_server", "data_dir")

ACCOUNT = "111111111111"  # the block's IAM user, and every instance but one
MEMBER = "222222222222"  # reached through the role that requires the external id
GOV_KEYS_ACCOUNT = "999999999999"  # owns the commercial key wrongly set for GovCloud
REGION = "us-east-1"
CHANGE = "CHG0077001"
BLOCK = "leak-check"
TOKEN_BLOCK = "leak-check-sft-token"
LEGACY_PROVIDER = "aws-legacy-variables"

# Planted secrets: letters, digits and '-' only, so that JSON, URL or shell quoting writes
# them unchanged and a plain search finds them in any of those forms.
LEGACY_COM_KEY_ID = "AKIALEAKCHECKCOM0001"
LEGACY_COM_SECRET = "LeakCheck-legacy-com-secret-access-key-0001"
LEGACY_COM_TOKEN = "LeakCheck-legacy-com-session-token-" + "C" * 40
LEGACY_GOV_SECRET = "LeakCheck-legacy-gov-secret-access-key-0002"
LEGACY_GOV_TOKEN = "LeakCheck-legacy-gov-session-token-" + "G" * 40
BLOCK_SECRET = "LeakCheck-block-secret-access-key-0003"
BLOCK_TOKEN = "LeakCheck-block-session-token-" + "B" * 40
EXTERNAL_ID = "LeakCheck-block-external-id-0004"
SFT_TOKEN = "LeakCheck-sft-enrollment-token-" + "S" * 32
QUICK_SFT = {"verify_delay_seconds": 0.1, "detect_timeout_seconds": 60}


# --- what is scanned ---------------------------------------------------------------------------


@dataclass
class Scan:
    """Everything a secret could have been kept in, as (place, bytes) pairs."""

    places: list[tuple[str, bytes]] = field(default_factory=list)

    def add(self, place: str, data: bytes | str) -> None:
        self.places.append((place, data.encode() if isinstance(data, str) else data))

    def add_tree(self, label: str, root: Path) -> None:
        """Every file under ``root``, as raw bytes."""
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(f"{label}: {path.relative_to(root)}", path.read_bytes())

    def add_sqlite_rows(self, label: str, database: Path) -> list[str]:
        """Every row of every table of a SQLite database, as text; returns the table names."""
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            ]
            for table in tables:
                rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
                self.add(f"{label} table {table} ({len(rows)} rows)", repr(rows))
        return tables

    @property
    def total_bytes(self) -> int:
        return sum(len(data) for _, data in self.places)

    def hits(self, secrets: dict[str, str]) -> list[str]:
        """``secret name in place`` for every secret found, raw or in a decoded layer."""
        found = []
        for place, data in self.places:
            layers = list(_decoded_layers(data))
            for name, secret in secrets.items():
                needle = secret.encode()
                if any(needle in layer for layer in layers):
                    found.append(f"{name} in {place}")
        return found


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")


def _decompressed(data: bytes) -> Iterator[bytes]:
    for decompress in (zlib.decompress, bz2.decompress, lzma.decompress):
        try:
            yield decompress(data)
        except (zlib.error, OSError, ValueError, lzma.LZMAError, EOFError):
            continue


def _decoded_layers(data: bytes, depth: int = 2) -> Iterator[bytes]:
    """``data``, and what every long base64 run in it decodes (and decompresses) to: Prefect
    keeps pickled results as base64 inside JSON."""
    yield data
    if depth == 0:
        return
    for run in _BASE64_RUN.findall(data):
        try:
            decoded = base64.b64decode(run + b"=" * (-len(run) % 4))
        except (binascii.Error, ValueError):
            continue
        yield from _decoded_layers(decoded, depth - 1)
        for inflated in _decompressed(decoded):
            yield from _decoded_layers(inflated, depth - 1)


def _sqlite_file(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def _prefect_api_records(scan: Scan, flow_run_ids: Iterable[UUID]) -> None:
    """Each flow run (with its parameters and state message), its task runs, logs and
    artifacts, as the API gives them."""
    APILogHandler().flush()  # logs reach the API from a background worker
    ids = list(flow_run_ids)
    of_ours = FlowRunFilter(id=FlowRunFilterId(any_=ids))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=of_ours)
        # The server records task runs from the events the flows emitted, in the background.
        deadline = time.monotonic() + 30
        while True:
            task_runs = client.read_task_runs(flow_run_filter=of_ours)
            if {t.flow_run_id for t in task_runs} == set(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
        )
    assert len(runs) == len(ids), "a flow run of the test is missing from the API"
    assert task_runs and logs and artifacts, "nothing to scan in the Prefect API"
    for run in runs:
        scan.add(f"flow run {run.name} ({run.flow_id})", run.model_dump_json())
    for task_run in task_runs:
        scan.add(f"task run {task_run.name}", task_run.model_dump_json())
    scan.add(f"{len(logs)} log lines", "\n".join(log.model_dump_json() for log in logs))
    for artifact in artifacts:
        scan.add(f"artifact {artifact.key or artifact.id}", artifact.model_dump_json())


# --- the world ---------------------------------------------------------------------------------


def _assumed_role_credentials() -> dict[str, str]:
    """The temporary keys moto's STS issued during the test (to the flows' AssumeRole)."""
    issued: dict[str, str] = {}
    for partitions in list(sts_backends.values()):
        for backend in list(partitions.values()):
            for n, role in enumerate(backend.assumed_roles):
                issued[f"assumed-role key id {n}"] = role.access_key_id
                issued[f"assumed-role secret key {n}"] = role.secret_access_key
                issued[f"assumed-role session token {n}"] = role.session_token
    return issued


@pytest.fixture
def legacy_provider(monkeypatch: pytest.MonkeyPatch) -> str:
    """A short provider name for the AWS provider built from the legacy variables, as ``aws``
    builds it when no block is saved (``aws`` itself would pick this test's saved block)."""
    monkeypatch.setattr(registry, "_registrations", dict(registry.registered_providers()))
    registry.register_provider(LEGACY_PROVIDER, aws_provider_from_environment)
    return LEGACY_PROVIDER


@pytest.fixture
def sft_token_block(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The enrollment token saved as a Prefect Secret block designated for it (and not in the
    environment)."""
    monkeypatch.delenv("SFT_ENROLLMENT_TOKEN", raising=False)
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_BLOCKS", TOKEN_BLOCK)
    Secret(value=SFT_TOKEN).save(TOKEN_BLOCK, overwrite=True)
    yield TOKEN_BLOCK
    Secret.delete(TOKEN_BLOCK)


@pytest.fixture
def block_keys(ssm_world: SsmWorld) -> Iterator[Credentials]:
    """An aws-provider block saved with moto's key id of an IAM user of ``ACCOUNT`` and the
    planted secret key, session token and external id; yields the IAM user's keys."""
    keys = ssm_world.credentials(ACCOUNT)
    AwsProviderBlock(
        environment="com",
        access_key_id=SecretStr(keys.access_key_id),
        secret_access_key=SecretStr(BLOCK_SECRET),
        session_token=SecretStr(BLOCK_TOKEN),
        external_id=SecretStr(EXTERNAL_ID),
        poll_initial_seconds=0.05,
        poll_max_seconds=0.2,
    ).save(BLOCK, overwrite=True)
    yield keys
    AwsProviderBlock.delete(BLOCK)


def _completed(state: State[Any]) -> Any:
    assert state.is_completed(), state.message
    return state.result()


@dataclass
class FlowRuns:
    """Every flow run once with the planted secrets, and what it touched."""

    states: dict[str, State[Any]]
    tap: SignatureTap
    gov_key_id: str
    sft_missing_id: str


def plant_legacy_variables(monkeypatch: pytest.MonkeyPatch, gov_key_id: str) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID_COM": LEGACY_COM_KEY_ID,
        "AWS_SECRET_ACCESS_KEY_COM": LEGACY_COM_SECRET,
        "AWS_SESSION_TOKEN_COM": LEGACY_COM_TOKEN,
        "AWS_ACCESS_KEY_ID_GOV": gov_key_id,
        "AWS_SECRET_ACCESS_KEY_GOV": LEGACY_GOV_SECRET,
        "AWS_SESSION_TOKEN_GOV": LEGACY_GOV_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)


def run_every_flow(
    world: SsmWorld, monkeypatch: pytest.MonkeyPatch, legacy_provider: str, sft_token_block: str
) -> FlowRuns:
    """Each of the five flows, with every kind of secret a flow can be given."""
    world.command_delay(pending=0.05)
    world.add_role(MEMBER, external_id=EXTERNAL_ID)
    gov_key_id = world.credentials(GOV_KEYS_ACCOUNT, partition="aws").access_key_id
    server = rhel_server(world, "leak-web-01")
    member = world.add_instance(account_id=MEMBER, region=REGION, name="leak-member")
    missing = sft_host(world, "missing", leak="plain")
    stopped = sft_host(world, "stopped", leak="base64")
    plant_legacy_variables(monkeypatch, gov_key_id)
    slug = f"aws-provider/{BLOCK}"
    states: dict[str, State[Any]] = {}
    tap = SignatureTap()
    with tap.installed():
        states["validate (legacy)"] = validate_credentials(
            environments=["com", "gov"], provider=legacy_provider, return_state=True
        )
        states["validate (block)"] = validate_credentials(
            environments=["com"], provider=slug, return_state=True
        )
        states["run-script"] = run_script(
            script='printf "%s\\n" "$AWS_SSM_INSTANCE_ID"',
            targets=[
                server.target(),
                Target(instance_id=member.instance_id, account_id=MEMBER, region=REGION),
            ],
            provider=slug,
            return_state=True,
        )
        # The block itself as the parameter (as a deployment form passes it), not its slug.
        states["prep"] = linux_qc_patching_prep(
            change_number=CHANGE,
            instances=[server.target()],
            provider=AwsProviderBlock.load(BLOCK, _sync=True),
            kernel_choices=STAGED,
            return_state=True,
        )
        server.boot(KERNEL_AFTER, 300)
        states["post"] = linux_qc_patching_post(
            CHANGE,
            instances=[server.target()],
            provider=slug,
            target_kernel=STAGED,
            return_state=True,
        )
        states["sft-fixer"] = sft_fixer(
            instances=[missing.target, stopped.target],
            action="auto",
            provider=slug,
            token_block=sft_token_block,
            return_state=True,
            **QUICK_SFT,
        )
    return FlowRuns(states, tap, gov_key_id, missing.id)


def check_every_flow_did_its_job(runs: FlowRuns) -> dict[str, Any]:
    """The flows' return values, once each is known to have done what it is for."""
    states = runs.states
    legacy = states["validate (legacy)"]
    assert legacy.is_failed()
    with pytest.raises(CredentialsRefusedError, match="gov"):
        legacy.result()
    [by_block] = _completed(states["validate (block)"]).checks
    assert by_block.status == "valid" and by_block.identity.source.value == "block"
    ran = _completed(states["run-script"])
    assert [r.status for r in ran.batch.results] == [ResultStatus.SUCCESS] * 2
    prep = _completed(states["prep"])
    assert [i.verdict for i in prep.instances] == [QcVerdict.PASSED]
    assert len(prep.staged_kernels()) == 1
    post = _completed(states["post"])
    assert [i.verdict for i in post.instances] == [PostVerdict.PASSED]
    fixed = _completed(states["sft-fixer"])
    assert {o.verdict for o in fixed.outcomes} == {SftVerdict.FIXED}
    return {
        "validate (block)": _completed(states["validate (block)"]),
        "run-script": ran,
        "prep": prep,
        "post": post,
        "sft-fixer": fixed,
    }


def every_secret_used(runs: FlowRuns, world: SsmWorld, block_keys: Credentials) -> dict[str, str]:
    """The planted secrets by name, once each is shown to have been used: finding none
    afterwards then means something."""
    for key_id, secret, token in (
        (LEGACY_COM_KEY_ID, LEGACY_COM_SECRET, LEGACY_COM_TOKEN),
        (runs.gov_key_id, LEGACY_GOV_SECRET, LEGACY_GOV_TOKEN),
        (block_keys.access_key_id, BLOCK_SECRET, BLOCK_TOKEN),
    ):
        signed = runs.tap.by_key(key_id)
        assert signed, f"no request was signed with {key_id}"
        assert all(r.signed_with(secret) and r.session_token == token for r in signed)
    operations = {r.operation for r in runs.tap.by_key(block_keys.access_key_id)}
    assert {"GetCallerIdentity", "AssumeRole", "SendCommand"} <= operations
    gov_answers = {r.answered_by for r in world.requests if r.access_key_id == runs.gov_key_id}
    assert gov_answers == {"denied:InvalidClientTokenId"}
    assert any(
        r.operation == "AssumeRole" and f"ExternalId={EXTERNAL_ID}".encode() in r.body
        for r in runs.tap.requests
    )
    # The enrollment token never travelled in a command: the instances read it themselves,
    # from the parameter the flow made for the run (and deleted: see the scan).
    assert not any(SFT_TOKEN in c.script for c in world.commands)
    assert {r.answer for r in world.secret_reads} == {"value"} and len(world.secret_reads) == 2
    installed = Store.default().latest_executions(None, "sft-fixer", "install")
    assert REDACTED in installed[runs.sft_missing_id].stderr  # the leaky host printed it back
    secrets = {
        "legacy com key id": LEGACY_COM_KEY_ID,
        "legacy com secret key": LEGACY_COM_SECRET,
        "legacy com session token": LEGACY_COM_TOKEN,
        "legacy gov key id": runs.gov_key_id,
        "legacy gov secret key": LEGACY_GOV_SECRET,
        "legacy gov session token": LEGACY_GOV_TOKEN,
        "block key id": block_keys.access_key_id,
        "block secret key": BLOCK_SECRET,
        "block session token": BLOCK_TOKEN,
        "block external id": EXTERNAL_ID,
        "sft enrollment token": SFT_TOKEN,
        **_assumed_role_credentials(),
    }
    assert "assumed-role secret key 0" in secrets, "no role was assumed"
    return secrets


def scan_everywhere(
    runs: FlowRuns, returned: dict[str, Any], console: str, data_dir: Path, world: SsmWorld
) -> Scan:
    """Every place a secret could have been kept: return values, states, the console, the
    Prefect API, events, Prefect's database, home and result storage, the store, reports, and
    in AWS: the commands as ``ListCommands`` shows them, the script files the agent wrote on
    the instances, and the parameters left in Parameter Store."""
    scan = _what_aws_keeps(world)
    for name, result in returned.items():
        scan.add(f"{name} return value", result.model_dump_json())
    for name, state in runs.states.items():
        scan.add(f"{name} final state", repr(state))
    try:
        runs.states["validate (legacy)"].result()
    except CredentialsRefusedError as refused:
        scan.add("validate (legacy) failure", f"{refused!r} {refused}")
    scan.add("console output of the test process", console)
    _prefect_api_records(scan, [s.state_details.flow_run_id for s in runs.states.values()])
    events = [e for client in AssertingPassthroughEventsClient.all for e in client.events]
    assert any(e.event.startswith("prefect.task-run.") for e in events), "no events to scan"
    scan.add(f"{len(events)} events emitted", "\n".join(e.model_dump_json() for e in events))
    prefect_db = _sqlite_file(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    scan.add_tree("Prefect database directory", prefect_db.parent)
    assert "flow_run" in scan.add_sqlite_rows("Prefect database", prefect_db)
    scan.add_tree("Prefect home", PREFECT_HOME.value())
    storage = PREFECT_LOCAL_STORAGE_PATH.value()
    if not storage.is_relative_to(PREFECT_HOME.value()):
        scan.add_tree("Prefect result storage", storage)
    assert any(
        place.startswith("Prefect home: storage/") for place, _ in scan.places
    ), "no persisted result to scan (run-script persists its results)"
    scan.add_tree("data directory (store, reports)", data_dir)
    store_tables = scan.add_sqlite_rows("store", data_dir / "cloudops.db")
    assert {"execution", "workflow_run", "sent_command", "change"} <= set(store_tables)
    reports = [p for p in (data_dir / "reports").iterdir() if p.suffix == ".md"]
    assert len(reports) >= 5, "a flow wrote no report"
    return scan


def _what_aws_keeps(world: SsmWorld) -> Scan:
    scan = Scan()
    now = time.time()
    for command in world.commands:
        scan.add(f"SSM command {command.command_id} (ListCommands)", repr(command.summary(now)))
        for instance_id in command.instance_ids:
            for path in world.instance(instance_id).root.rglob("_script.sh"):
                scan.add(f"agent script file on {instance_id}: {path.name}", path.read_bytes())
    for account, partitions in list(ssm_backends.items()):
        for region, backend in list(partitions.items()):
            for name, versions in list(backend._parameters.items()):
                scan.add(f"SSM parameter {name} in {account} {region}", repr(versions[-1].value))
    return scan


def test_no_secret_given_to_any_flow_is_kept_anywhere(
    ssm_world: SsmWorld,
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
    legacy_provider: str,
    sft_token_block: str,
    block_keys: Credentials,
    capfd: pytest.CaptureFixture[str],
    asserting_and_emitting_events_worker: EventsWorker,  # noqa: F811 (imported above)
) -> None:
    runs = run_every_flow(ssm_world, monkeypatch, legacy_provider, sft_token_block)
    asserting_and_emitting_events_worker.drain()

    returned = check_every_flow_did_its_job(runs)
    secrets = every_secret_used(runs, ssm_world, block_keys)
    console = capfd.readouterr()
    scan = scan_everywhere(runs, returned, console.out + console.err, data_dir, ssm_world)

    hits = scan.hits(secrets)
    print(
        f"== secrets scan: {len(secrets)} secrets used by {len(runs.states)} flow runs; "
        f"{len(scan.places)} places, {scan.total_bytes:,} bytes scanned "
        f"({len(runs.tap.requests)} signed AWS requests checked); {len(hits)} hits"
    )
    assert hits == []


def test_the_scan_finds_a_secret_in_each_form_a_store_could_keep_it() -> None:
    secret = BLOCK_SECRET
    pickled = pickle.dumps({"keys": SecretStr(secret)})
    scan = Scan()
    scan.add("plain text", f"key={secret};")
    scan.add("JSON", json.dumps({"a": [secret]}))
    scan.add("pickled result, base64 in JSON", json.dumps({"result": _b64(pickled)}))
    scan.add("compressed pickle, base64 in JSON", json.dumps({"r": _b64(zlib.compress(pickled))}))
    scan.add("nothing", json.dumps({"result": _b64(pickle.dumps("harmless" * 10))}))

    assert scan.hits({"block secret key": secret}) == [
        f"block secret key in {place}" for place, _ in scan.places[:4]
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
