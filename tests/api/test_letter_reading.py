"""A received letter read from the coordinator's page: its sections as text, its version, for
those the record lets read it only."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from adapter.api.app import create_app
from adapter.auth import issue_token
from adapter.config import get_settings
from adapter.directory.importer import import_path
from adapter.ingest.delivery import delivery_pusher
from adapter.ingest.ingestion import ingest_letter
from adapter.store.db import get_engine
from adapter.store.letters import ReceivedLetter
from tests.api.conftest import HOSPITAL, bearer
from tests.support.paths import FIXTURES, LDL_SES_EXAMPLE


def test_the_letter_is_read_with_its_version_by_those_who_may_read_it() -> None:
    engine, settings = get_engine(), get_settings()
    import_path(engine, FIXTURES / "coordination" / "local_directory.csv")
    ingest_letter(LDL_SES_EXAMPLE.read_bytes(), content_type="application/xml", engine=engine,
                  settings=settings)
    client = TestClient(create_app(settings))
    coordinator = bearer(issue_token("coordinator", cpts="CPTS-PARIS-CENTRE"))
    with Session(engine) as session:
        (received,) = session.exec(select(ReceivedLetter)).all()
    # not in the record yet: nobody but the system reads it
    assert client.get(f"/coordination/letters/{received.id}", headers=coordinator
                      ).status_code == 404
    assert delivery_pusher(engine, threads=1).drain(timeout=30)
    page = client.get("/coordination/page", headers=coordinator).text
    (link,) = re.findall(r'href="(/coordination/letters/[0-9a-f]+)">Lire la lettre \(version 1\)',
                         page)
    assert link == f"/coordination/letters/{received.id}"

    answer = client.get(link, headers=coordinator)
    assert answer.status_code == 200, answer.text
    assert "Version 1, reçue le" in answer.text
    assert "<h2>Motif de l&#x27;hospitalisation</h2>" in answer.text
    assert "Episode psychotique – cachexie/anorexie" in answer.text
    assert "<script" not in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    gp = bearer(issue_token("professional", idnat="801984758437"))  # in the care team
    assert client.get(link, headers=gp).status_code == 200
    for who, token in {
        "another CPTS's coordinator": issue_token("coordinator", cpts="CPTS-LYON-1"),
        "a professional outside the team": issue_token("professional", idnat="899999999999"),
    }.items():
        assert client.get(link, headers=bearer(token)).status_code == 404, who
    hospital = bearer(issue_token("hospital", organization=HOSPITAL))
    assert client.get(link, headers=hospital).status_code == 403
    assert client.get("/coordination/letters/0000", headers=coordinator).status_code == 404
    assert client.get(link).status_code == 401
