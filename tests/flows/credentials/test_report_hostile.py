"""The credential report shows what AWS or a misconfigured source said (the problem text) as
words only: no markup, HTML, links or terminal codes."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings

from flows.common.text import one_line
from flows.credentials.report import (
    CheckStatus,
    CredentialValidation,
    EnvironmentCheck,
    summary_markdown,
)
from providers.partitions import Environment
from tests.flows.markdown_safety import assert_only_words_differ, assert_shown, hostile_text

CHECKED_AT = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def validation(text: str) -> CredentialValidation:
    return CredentialValidation(
        provider="aws",
        checks=[
            EnvironmentCheck(environment=env, status=CheckStatus.REFUSED, problem=text)
            for env in Environment
        ],
    )


@settings(max_examples=60, deadline=None)
@given(text=hostile_text)
def test_the_report_shows_the_problem_as_words_only(text: str) -> None:
    hostile = summary_markdown(validation(text), CHECKED_AT)

    assert_only_words_differ(hostile, summary_markdown(validation("word"), CHECKED_AT))
    if one_line(text):
        assert_shown(hostile, [one_line(text)])
