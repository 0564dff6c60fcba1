"""sft-fixer's settings: which Secret blocks may hold the token, and where an operator keeps
it instead."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.sft.settings import DEFAULT_TOKEN_BLOCK, SftSettings


def test_by_default_only_the_block_of_the_default_name_is_designated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLOUDOPS_SFT_TOKEN_BLOCKS")

    assert SftSettings(_env_file=None).token_blocks == [DEFAULT_TOKEN_BLOCK]


def test_designated_blocks_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDOPS_SFT_TOKEN_BLOCKS", " sft-prod, sft-lab ,")

    assert SftSettings(_env_file=None).token_blocks == ["sft-prod", "sft-lab"]


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"CLOUDOPS_SFT_TOKEN_BLOCKS": "Prod Token"}, "not Prefect block names"),
        (
            {"CLOUDOPS_SFT_TOKEN_PARAMETER": "/a", "CLOUDOPS_SFT_TOKEN_SECRET_ID": "b"},
            "not both",
        ),
        ({"CLOUDOPS_SFT_TOKEN_PARAMETER": "/ops/sft token"}, "not a Parameter Store name"),
    ],
)
def test_settings_that_cannot_be_right_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], words: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=words):
        SftSettings(_env_file=None)
