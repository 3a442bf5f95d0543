"""Care coordination around the discharge: the pathway coordinator in the care team,
patient consent, SOR discharge notifications and FHIR Subscriptions, care-team merge, the living
directory and the coordinator's page.

Ingestion calls `coordinate(conversion, engine)` between conversion and enqueueing; the pusher
runs `subscriptions.after_push` once the record took a bundle (`adapter.ingest.delivery`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from adapter.coordination.enrichment import enrich

__all__ = ["coordinate", "enrich"]


def record_reader(engine: Engine) -> Any:
    """The embedded record to merge care teams with (None when pushing elsewhere)."""
    from adapter.config import get_settings

    if get_settings().target_url:
        return None  # an external record: its care team is merged by what it already holds
    try:
        from adapter.record.repository import Repository
    except ModuleNotFoundError:
        return None
    return Repository(engine)


def coordinate(conversion: Any, engine: Engine, *, in_place: bool = False) -> Any:
    """`enrich` with the installation's directory and record: what ingestion should call
    (`in_place` when it drops the conversion it passes, see `enrich`)."""
    from adapter.coordination.coordinators import DirectoryCoordinators

    return enrich(conversion, DirectoryCoordinators(engine), record_reader(engine), engine=engine,
                  in_place=in_place)
