"""Every importer, the look-ups and the searches on a real PostgreSQL database."""

from __future__ import annotations

import pytest

from adapter.directory.importer import import_path
from adapter.directory.lookup import SqlDirectory
from adapter.directory.search import Criteria, search_practitioners, search_roles
from adapter.store.db import engine_for, init_db
from tests.directory.conftest import FHIR_SAMPLE, LOCAL_SAMPLE, MSSANTE_SAMPLE, NATIONAL_SAMPLE

pytestmark = pytest.mark.postgres


def test_all_sources_import_and_answer_on_postgresql(postgres_url: str) -> None:
    engine = engine_for(postgres_url)
    init_db(engine)
    try:
        outcomes = [
            import_path(engine, sample)
            for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE, FHIR_SAMPLE, LOCAL_SAMPLE)
        ]
        assert [(s.kind, s.inserted, s.rejected) for s in outcomes] == [
            ("national", 6, 4),
            ("mssante", 5, 3),
            ("fhir", 5, 2),
            ("local", 4, 3),
        ]
        again = [
            import_path(engine, sample)
            for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE, LOCAL_SAMPLE)
        ]
        assert [(s.inserted, s.updated) for s in again] == [(0, 0), (0, 0), (0, 0)]

        directory = SqlDirectory(engine)
        card = directory.professional("1.2.250.1.71.4.2.1", "801234567896")
        assert card is not None and card.family == "DUCOUT"
        assert "elsa.ducout@infirmier.mssante.fr" in [c.value for c in card.telecom if c.mssante]
        assert [role.code for role in card.roles] == ["referent"]
        assert [c.family for c in directory.coordinators("75010")] == ["LAMBERT"]
        assert directory.organization("https://finess.esante.gouv.fr", "750012345") is not None

        by_name = search_roles(engine, Criteria(name="médi"))
        assert [m.practitioner.family for m in by_name.items] == ["MEDIONI"]
        by_specialty = search_roles(engine, Criteria(specialty="SM27", postcode="75015"))
        assert by_specialty.total == 1
        people = search_practitioners(engine, Criteria(name="d", name_mode="starts"), limit=2)
        assert people.total == 3 and len(people.items) == 2  # DAVID, DUCOUT, DUPONT
    finally:
        engine.dispose()
