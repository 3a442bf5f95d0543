"""The liaison web application: ingestion, the embedded record, the directory, coordination,
health and metrics in one FastAPI app, with the pusher running in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from adapter import __version__
from adapter.api import (
    coordination_routes,
    directory_routes,
    discharge_letters,
    discharge_notices,
    health,
    login_routes,
    metrics,
    record_routes,
)
from adapter.api.errors import install_error_handlers
from adapter.api.mhd import provide_document_interceptor
from adapter.api.mllp import MllpListener
from adapter.api.read_admission import admission_of
from adapter.config import Settings, get_settings
from adapter.errors import Misconfigured
from adapter.ingest.delivery import delivery_pusher
from adapter.ingest.messages import thread_interceptor
from adapter.ingest.preparation import ConversionPool
from adapter.push.process import PusherProcess
from adapter.record.repository import Repository
from adapter.runtime import settle_after_start
from adapter.store.db import can_share, get_engine

logger = logging.getLogger("liaison.api")

def create_app(settings: Settings | None = None, *, serving: bool = False) -> FastAPI:
    """The app; `serving`: it is what its process lives for (`liaison serve`), so once
    started, what it built is set aside from the collector (`settle_after_start`)."""
    settings = settings or get_settings()
    for refusal in settings.refusals():
        raise Misconfigured(refusal)
    engine = get_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        converters = settings.resolved_convert_processes
        if converters > 0 and can_share(engine):
            app.state.converters = await run_in_threadpool(
                ConversionPool(settings.resolved_database_url, converters, settings).start
            )
        if settings.mllp_port is not None:  # ADT from the hospitals' interface engines
            app.state.mllp = await MllpListener(engine, settings).start()
        if settings.push_in_server and settings.push_process and can_share(engine):
            app.state.pusher = PusherProcess(delivery_pusher).start()
        elif settings.push_in_server:
            app.state.pusher = delivery_pusher(engine, settings).start()
        if serving:
            # each full collection walked every object the server holds: ~0.2 s with every
            # request waiting, every few seconds under a thousand readers (docs/benchmarks.md)
            settle_after_start()
        try:
            yield
        finally:
            if app.state.mllp is not None:
                await app.state.mllp.stop()
            pusher: Any = getattr(app.state, "pusher", None)
            if pusher is not None:
                pusher.stop()
            if app.state.converters is not None:
                app.state.converters.stop()

    app = FastAPI(
        title="liaison",
        version=__version__,
        description=(
            "Hospital discharge letters (CDA LDL-SES) → FHIR R4 care plans, care teams and "
            "messages, pushed reliably to a shared patient record."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.pusher = None
    app.state.mllp = None
    app.state.converters = None  # letters are prepared in this process until the pool starts
    app.state.bundle_interceptors = [
        provide_document_interceptor(engine, settings, lambda: app.state.converters,
                                     lambda: admission_of(app))
    ]
    app.state.record_repository = Repository(engine)  # the record routes and the pusher's
    app.state.create_interceptors = {  # the patient's thread, written by its care team
        "Communication": thread_interceptor(engine, app.state.record_repository, settings)}
    install_error_handlers(app)
    app.include_router(discharge_letters.router)
    app.include_router(discharge_notices.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # in matching order: the Subscription routes before the record's /fhir
    app.include_router(coordination_routes.fhir_router)  # /fhir/Subscription (rest-hook)
    app.include_router(record_routes.router)  # /fhir
    app.include_router(directory_routes.router)  # /annuaire/fhir
    app.include_router(coordination_routes.router)  # coordination pages and routes
    login_routes.install(app, settings)  # people's sessions; /login with an identity provider
    return app


def create_served_app() -> FastAPI:
    """The app of a `liaison serve` worker process (uvicorn's factory, settings from the
    environment)."""
    return create_app(serving=True)
