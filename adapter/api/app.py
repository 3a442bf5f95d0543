"""The liaison web application: ingestion, the embedded record, the directory, coordination,
health and metrics in one FastAPI app, with the pusher running in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from adapter import __version__
from adapter.api import discharge_letters, health, metrics, validation
from adapter.api.errors import install_error_handlers
from adapter.api.mhd import provide_document_interceptor
from adapter.api.preparation import ConversionPool
from adapter.config import Settings, get_settings
from adapter.errors import Misconfigured
from adapter.parts import optional
from adapter.push.process import PusherProcess
from adapter.push.targets import target_from_settings
from adapter.push.worker import Pusher
from adapter.store.db import can_share, get_engine

logger = logging.getLogger("liaison.api")

# Routers of the other parts, mounted when the part is installed.
# (module, attribute), in matching order: the Subscription routes before the record's /fhir.
OPTIONAL_ROUTERS = (
    ("adapter.coordination.api", "fhir_router"),  # /fhir/Subscription (rest-hook)
    ("adapter.record.api", "router"),  # /fhir
    ("adapter.directory.api", "router"),  # /annuaire/fhir
    ("adapter.coordination.api", "router"),  # coordination pages and routes
)


def register_outbox_handlers(engine: Engine) -> None:
    """Every kind of outbox entry a pusher of this process must know how to deliver, besides
    transaction bundles: deferred letter validation and, if installed, subscription
    notifications. `liaison serve` and `liaison worker` both call it."""
    validation.register(engine)
    install_subscriptions = optional("adapter.coordination.subscriptions", "install")
    if install_subscriptions is not None:
        install_subscriptions()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    for refusal in settings.refusals():
        raise Misconfigured(refusal)
    engine = get_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        converters = settings.resolved_convert_processes
        if converters > 0 and can_share(engine):
            app.state.converters = await run_in_threadpool(
                ConversionPool(settings.resolved_database_url, converters).start
            )
        if settings.push_in_server and settings.push_process and can_share(engine):
            app.state.pusher = PusherProcess().start()
        elif settings.push_in_server:
            register_outbox_handlers(engine)
            app.state.pusher = Pusher(
                engine, target_from_settings(settings, engine), settings=settings
            ).start()
        try:
            yield
        finally:
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
    app.state.converters = None  # letters are prepared in this process until the pool starts
    app.state.bundle_interceptors = [
        provide_document_interceptor(engine, settings, lambda: app.state.converters)
    ]
    repository_class = optional("adapter.record.repository", "Repository")
    if repository_class is not None:  # the record routes and the pusher share one engine
        app.state.record_repository = repository_class(engine)
    install_error_handlers(app)
    app.include_router(discharge_letters.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    for module_name, attribute in OPTIONAL_ROUTERS:
        router: APIRouter | None = optional(module_name, attribute)
        if router is not None:
            app.include_router(router)
    return app
