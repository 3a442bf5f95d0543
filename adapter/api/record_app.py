"""A standalone application serving only the record (tests, or a record-only deployment)."""

from __future__ import annotations

from fastapi import FastAPI

from adapter.api.record_routes import router
from adapter.record.repository import Repository
from adapter.store.db import get_engine


def create_record_app(database_url: str | None = None) -> FastAPI:
    """The `/fhir` record on `database_url` (default: the configured database)."""
    app = FastAPI(title="liaison shared record", docs_url=None, redoc_url=None)
    app.state.record_repository = Repository(get_engine(database_url))
    app.state.bundle_interceptors = []
    app.include_router(router)
    return app
