"""One entry point for every directory format: `import_path` opens the file (or the extract in
its .zip), recognises the format and runs the matching importer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine

from adapter.directory.fhir_bundle import import_fhir_bundle
from adapter.directory.local_csv import import_local_csv
from adapter.directory.mssante import import_mssante
from adapter.directory.national import import_national
from adapter.directory.sources import FHIR, LOCAL, MSSANTE, NATIONAL, open_source
from adapter.directory.writer import ImportSummary, ProgressCallback, RejectionCallback

_IMPORTERS = {
    NATIONAL: import_national,
    MSSANTE: import_mssante,
    FHIR: import_fhir_bundle,
    LOCAL: import_local_csv,
}


def import_path(
    engine: Engine,
    path: Path,
    *,
    kind: str | None = None,
    on_reject: RejectionCallback | None = None,
    on_start: Callable[[str, str, int | None], None] | None = None,
    progress: ProgressCallback | None = None,
    full: bool = True,
) -> ImportSummary:
    """Import `path` into the directory. `on_start(kind, name, size)` is told what is being read
    before the first line, so a caller can size its progress bar."""
    with open_source(Path(path), kind) as source:
        if on_start:
            on_start(source.kind, source.name, source.size)
        importer = _IMPORTERS[source.kind]
        return importer(
            engine, source.stream, source.name, on_reject=on_reject, progress=progress, full=full
        )
