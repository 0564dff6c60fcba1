"""Blocks saved in and registered with a real (temporary) Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate

from blocks import AwsProviderBlock, ProviderBlockInvalidError, load_provider
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


@contextmanager
def _saved_as_the_ui_does(name: str, data: dict[str, object]) -> Iterator[None]:
    """A document saved the way the Prefect UI saves a form (no Python check runs on it),
    deleted afterwards so that ``aws`` keeps resolving as other tests expect."""
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("aws-provider")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
        assert schema is not None
        document = client.create_block_document(
            BlockDocumentCreate(
                name=name,
                data=data,
                block_type_id=block_type.id,
                block_schema_id=schema.id,
            )
        )
        try:
            yield
        finally:
            client.delete_block_document(document.id)


def test_a_block_saved_from_the_ui_with_half_a_key_pair_is_refused_by_name(
    save_block: SaveBlock,
) -> None:
    save_block(AwsProviderBlock(), "registered-first")  # registers the type and its schema
    with (
        _saved_as_the_ui_does("half-a-key", {"access_key_id": "AKIAHALFAPAIR1234567"}),
        pytest.raises(ProviderBlockInvalidError) as refused,
    ):
        load_provider("aws-provider/half-a-key")

    message = str(refused.value)
    assert "aws-provider block 'half-a-key' is not valid" in message
    assert "set both the access key id and the secret access key" in message
    assert "validate=False" not in message and "AKIAHALFAPAIR" not in message


def test_the_form_explains_each_choice_and_offers_regions_to_pick() -> None:
    schema = AwsProviderBlock.model_json_schema()
    environment = schema["properties"]["environment"]
    assert environment["enum"] == ["com", "gov"] and "GovCloud" in environment["description"]
    regions = schema["properties"]["default_regions"]["items"]
    choices = schema["definitions"][regions["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert {"us-east-1", "us-gov-west-1"} <= set(choices)
    assert "AWS Credentials" in AwsProviderBlock.get_description()


def test_keys_come_from_an_aws_credentials_block_the_operator_already_has(
    save_block: SaveBlock,
) -> None:
    from prefect_aws import AwsCredentials

    AwsCredentials(
        aws_access_key_id="AKIAFROMPREFECTAWS12",
        aws_secret_access_key="prefectAwsSecretKey/abcdefghijklmnopqrst",
        aws_session_token="prefectAwsSessionToken",
    ).save("ops-keys", overwrite=True)
    try:
        save_block(
            AwsProviderBlock(environment="gov", aws_credentials_block="ops-keys"), "borrowed"
        )
        config = AwsProviderBlock.load("borrowed").to_config()
        assert config.access_key_id is not None and config.secret_access_key is not None
        assert config.access_key_id.get_secret_value() == "AKIAFROMPREFECTAWS12"
        assert config.secret_access_key.get_secret_value().startswith("prefectAwsSecretKey/")
        assert config.session_token is not None
        assert config.session_token.get_secret_value() == "prefectAwsSessionToken"
        assert "prefectAwsSecretKey" not in repr(config)
    finally:
        AwsCredentials.delete("ops-keys")

    with pytest.raises(ProviderBlockInvalidError, match="'ops-keys' named on the aws-provider"):
        AwsProviderBlock(aws_credentials_block="ops-keys").to_config()


def test_keys_typed_on_the_block_and_an_aws_credentials_block_are_one_too_many() -> None:
    with pytest.raises(ValueError, match="keep one of them"):
        AwsProviderBlock(
            access_key_id="AKIAONBLOCK123456789",
            secret_access_key="x" * 40,
            aws_credentials_block="ops-keys",
        )
