"""Care coordination around the discharge: the pathway coordinator in the care team,
patient consent, SOR discharge notifications and FHIR Subscriptions, care-team merge, the living
directory and the coordinator's page.

Ingestion calls `coordinate(conversion, engine)` between conversion and enqueueing; the pusher
runs `subscriptions.after_push` once the record took a bundle (`adapter.ingest.delivery`).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from adapter.config import Settings, get_settings
from adapter.coordination.coordinators import DirectoryCoordinators
from adapter.coordination.enrichment import enrich
from adapter.coordination.record_port import CareTeamSource
from adapter.coordination.record_reader import RecordCareTeams
from adapter.coordination.rest_record import RestCareTeams
from adapter.mapping.engine import Conversion
from adapter.push.targets import credentials_from_settings
from adapter.record.repository import Repository

__all__ = ["coordinate", "embedded_record", "enrich", "shared_care_teams"]


def embedded_record(engine: Engine, settings: Settings | None = None) -> Repository | None:
    """liaison's embedded record, None when letters go to another shared record."""
    return None if (settings or get_settings()).target_url else Repository(engine)


_rest_records: dict[str, RestCareTeams] = {}


def shared_care_teams(engine: Engine, settings: Settings | None = None) -> CareTeamSource:
    """Where the care-team merge reads earlier stays: the record letters are pushed to."""
    settings = settings or get_settings()
    if not settings.target_url:
        return RecordCareTeams(Repository(engine))
    if settings.target_url not in _rest_records:  # one client (and its pause) per process
        credentials = credentials_from_settings(settings)
        _rest_records[settings.target_url] = RestCareTeams(
            settings.target_url,
            headers=(lambda: {"Authorization": f"Bearer {credentials.token()}"})
            if credentials is not None else None)
    return _rest_records[settings.target_url]


def coordinate(conversion: Conversion, engine: Engine, *, in_place: bool = False,
               settings: Settings | None = None) -> Conversion:
    """`enrich` with the installation's directory and record: what ingestion should call
    (`in_place` when it drops the conversion it passes, see `enrich`)."""
    return enrich(conversion, DirectoryCoordinators(engine), shared_care_teams(engine, settings),
                  engine=engine, in_place=in_place)
