"""Fixtures of the directory tests: the sample extracts and a fresh engine on the test database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from adapter.store import db
from tests.support.paths import FIXTURES

DIRECTORY_FIXTURES = FIXTURES / "directory"
NATIONAL_SAMPLE = DIRECTORY_FIXTURES / "PS_LibreAcces_Personne_activite_202611270000.txt"
MSSANTE_SAMPLE = DIRECTORY_FIXTURES / "Extraction_Correspondance_MSSante_202611270000.txt"
FHIR_SAMPLE = DIRECTORY_FIXTURES / "annuaire_searchset_bundle.json"
LOCAL_SAMPLE = DIRECTORY_FIXTURES / "cpts-paris-5-15.csv"


@pytest.fixture
def engine(liaison_env: Path) -> Engine:
    """The test's own SQLite database, schema created."""
    return db.get_engine()


@pytest.fixture
def loaded(engine: Engine) -> Engine:
    """A directory holding every sample: national, MSSanté, FHIR Bundle and local CPTS CSV."""
    from adapter.directory.importer import import_path

    for sample in (NATIONAL_SAMPLE, MSSANTE_SAMPLE, FHIR_SAMPLE, LOCAL_SAMPLE):
        import_path(engine, sample)
    return engine
