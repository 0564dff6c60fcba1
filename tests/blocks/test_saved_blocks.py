"""Blocks saved in and registered with a real (temporary) Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect.client.orchestration import get_client

from blocks import AwsProviderBlock
from tests.blocks.conftest import SaveBlock

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "access_key_id": "AKIAROUNDTRIP1234567",
    "secret_access_key": "roundTripSecretKey/abcdefghijklmnopqrstu",
    "session_token": "roundTripSessionToken",
    "external_id": "roundTripExternalId",
}


def test_aws_block_round_trips_with_its_secrets(save_block: SaveBlock) -> None:
    save_block(
        AwsProviderBlock(
            environment="gov",
            **SECRETS,
            default_regions=["us-gov-east-1"],
            output_s3_bucket="ssm-output",
            poll_max_seconds=9,
        ),
        "round-trip",
    )

    loaded = AwsProviderBlock.load("round-trip")
    for name, value in SECRETS.items():
        assert getattr(loaded, name).get_secret_value() == value
    config = loaded.to_config()
    assert config.environment == "gov"
    assert config.default_regions == ("us-gov-east-1",)
    assert (config.output_s3_bucket, config.poll.max_seconds) == ("ssm-output", 9)

    # What the API shows anyone reading the document without asking for secrets.
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "round-trip", "aws-provider", include_secrets=False
        )
    plain = json.dumps(document.data)
    for name, value in SECRETS.items():
        assert value not in plain
        assert set(str(document.data[name])) == {"*"}
    assert document.data["environment"] == "gov"


def test_cli_registers_every_block_type(prefect_api_url: str) -> None:
    # The repository first on the path: the CLI must import this checkout's ``blocks`` even
    # where an editable install predates the package's ``__init__.py``.
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "block", "register", "-m", "blocks"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    output = " ".join(completed.stdout.split())
    assert "Successfully registered 2 blocks" in output
    assert "AWS Provider" in output and "Local Provider" in output

    with get_client(sync_client=True) as client:
        for slug in ("aws-provider", "local-provider"):
            block_type = client.read_block_type_by_slug(slug)
            assert block_type.slug == slug
            assert block_type.description
