"""Each version's body is stored once: the current one in the resource row, past ones in their
history row. vread and _history give every version back, also from history rows written with a
copy of the body by earlier versions of liaison."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapter.errors import Gone
from adapter.record.repository import Repository
from adapter.store.db import engine_for, init_db

PATIENT = {"resourceType": "Patient", "name": [{"family": "Martin"}]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        url = server.create_database(f"liaison_versions_{uuid.uuid4().hex[:10]}")
    else:
        url = f"sqlite:///{tmp_path / 'liaison.db'}"
    engine = engine_for(url)
    init_db(engine)
    yield engine
    engine.dispose()


def _history_bodies(engine: Engine, resource_id: str) -> dict[int, str | None]:
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT version_id, body FROM record_version WHERE resource_id = :id"),
            {"id": resource_id}).all()
    return {version: body for version, body in rows}


def _family(resource: dict) -> str:
    return resource["name"][0]["family"]


def test_the_current_body_is_stored_once_and_every_version_reads_back(engine: Engine) -> None:
    repository = Repository(engine)
    created = repository.create(dict(PATIENT)).stored()
    assert created is not None
    resource_id = created["id"]
    assert _history_bodies(repository.engine, resource_id) == {1: None}

    for family in ("Durand", "Petit"):
        current = repository.read("Patient", resource_id)
        repository.update("Patient", resource_id,
                          {**current, "name": [{"family": family}]})
    bodies = _history_bodies(repository.engine, resource_id)
    assert bodies[3] is None and bodies[1] is not None and bodies[2] is not None
    assert [_family(repository.vread("Patient", resource_id, str(v))) for v in (1, 2, 3)] == [
        "Martin", "Durand", "Petit"]

    repository.delete("Patient", resource_id)
    assert _history_bodies(repository.engine, resource_id)[3] is not None  # no longer current
    with pytest.raises(Gone):
        repository.vread("Patient", resource_id, "4")
    history = repository.history("Patient", resource_id)
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "PUT", "POST"]
    assert [_family(e["resource"]) for e in history["entry"][1:]] == ["Petit", "Durand", "Martin"]


def test_history_rows_that_kept_a_copy_of_the_body_are_read_and_left_as_they_are(
    engine: Engine,
) -> None:
    repository = Repository(engine)
    created = repository.create(dict(PATIENT)).stored()
    assert created is not None
    resource_id = created["id"]
    with repository.engine.begin() as connection:  # as liaison wrote history rows before
        connection.execute(text(
            "UPDATE record_version SET body = (SELECT body FROM record_resource r WHERE "
            "r.resource_id = record_version.resource_id) WHERE resource_id = :id"),
            {"id": resource_id})
    kept = _history_bodies(repository.engine, resource_id)[1]
    repository.update("Patient", resource_id, {**created, "name": [{"family": "Durand"}]})
    assert _history_bodies(repository.engine, resource_id)[1] == kept
    assert _family(repository.vread("Patient", resource_id, "1")) == "Martin"
    assert _family(repository.vread("Patient", resource_id, "2")) == "Durand"
