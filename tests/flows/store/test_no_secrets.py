"""Secrets never land in the store: its API takes names, never credentials, and refuses a
credential passed where a name belongs without repeating it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from flows.store import Store
from providers.aws.settings import LegacyCredentials
from tests.flows.store.conftest import make_change, make_result
from tests.flows.store.test_commands_store import make_ref

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDSECRET"
SESSION_TOKEN = "FwoGZXIvYXdzEPLANTEDTOKEN//////////wEaDH+abc"


def _every_text_in(store: Store) -> list[str]:
    texts = []
    with store.engine.connect() as connection:
        tables = MetaData()
        tables.reflect(connection)  # every table there is, alembic_version included
        for table in tables.sorted_tables:
            for row in connection.execute(select(table)):
                texts.extend(str(value) for value in row)
    return texts


def test_a_flows_records_hold_no_planted_secret(store: Store, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID_COM", "AKIAPLANTEDKEYID0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_COM", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN_COM", SESSION_TOKEN)
    credentials = LegacyCredentials()  # what a flow holds in memory while it runs
    assert credentials.keys_for("com") is not None

    spec = make_change()
    store.save_change(spec)
    run_id = store.start_run("flow-1", "linux-qc-patching-prep", "qc", "aws", spec.change_number)
    results = [make_result(t.instance_id) for t in spec.targets]
    store.record_results(run_id, results, parsed={results[0].instance_id: {"kernel": "5.14"}})
    store.record_command("flow-1/qc", make_ref("cmd-1"))
    store.finish_run(run_id, "success", len(results), 0)

    for planted in (SECRET_KEY, SESSION_TOKEN, "AKIAPLANTEDKEYID0000", store.url):
        for value in _every_text_in(store):
            assert planted not in value


@pytest.mark.parametrize("field", ["provider", "workflow", "step", "flow_run_id"])
def test_a_credential_given_as_a_name_is_refused_and_not_repeated(store: Store, field):
    names = {
        "flow_run_id": "flow-1",
        "workflow": "run-script",
        "step": "inline",
        "provider": "aws",
    }
    names[field] = SECRET_KEY if field != "flow_run_id" else SECRET_KEY.replace("/", "+")
    with pytest.raises(ValueError, match=field.replace("_", " ")) as caught:
        store.start_run(**names, change_number=None)
    assert SECRET_KEY not in str(caught.value)
    assert names[field] not in str(caught.value)
    assert all(SECRET_KEY not in value for value in _every_text_in(store))


def test_a_secret_is_not_in_the_sqlite_file_itself(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_COM", SECRET_KEY)
    url = f"sqlite:///{tmp_path / 'cloudops.db'}"
    with Store(url) as store:
        store.save_change(make_change())
        run_id = store.start_run("flow-1", "sft-fixer", "detect", "aws", None)
        store.record_results(run_id, [make_result("i-0123456789abcdef0")])
        store.finish_run(run_id, "success", 1, 0)
        with pytest.raises(ValueError):
            store.start_run("flow-2", "sft-fixer", "detect", SECRET_KEY, None)
    for path in tmp_path.iterdir():  # the database and its write-ahead log
        assert SECRET_KEY.encode() not in path.read_bytes(), path.name
