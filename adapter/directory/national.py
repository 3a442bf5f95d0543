"""Importer of the national extract PS_LibreAcces_Personne_activite (Annuaire Santé).

One line per activity: the professional's identity (idNat_PS, names, profession) is repeated on
each of their activities, followed by the activity (specialty, mode, site, address, phones).
Lines become a Practitioner (first line wins), one PractitionerRole per line, and an
Organization per structure identified by idNat_Struct. The file is read as a stream, in chunks
of lines, each written in its own transaction; memory stays flat whatever the file size.
"""

from __future__ import annotations

import gc
import re
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from hashlib import blake2b
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from adapter.directory import codes
from adapter.directory.text import fold
from adapter.directory.writer import (
    ImportSummary,
    ProgressCallback,
    Rejected,
    RejectionCallback,
    Upserter,
    bulk_settings,
    deferred_indexes,
    finish_run,
    start_run,
    table_of,
)
from adapter.directory.writer_process import WriterProcess
from adapter.errors import BadRequest
from adapter.store.db import can_share
from adapter.store.directory_tables import (
    ORGANIZATION_COLUMNS,
    PRACTITIONER_COLUMNS,
    ROLE_COLUMNS,
    DirectoryOrganization,
    DirectoryPractitioner,
    DirectoryRole,
)

KIND = "national"
CHUNK_LINES = 20_000
MAX_SITES_REMEMBERED = 500_000  # ~50 MB at most; beyond, the database resolves repeats
PERSON_COLUMNS = 13  # type, identifier, idNat, civilities, names, profession, category
# A national activity fills the role columns up to the e-mail; the rest is for local directories.
NATIONAL_ROLE_COLUMNS = ROLE_COLUMNS[: ROLE_COLUMNS.index("email") + 1]


class _Layout:
    """Column positions and checks, from mappings/directory/national_extract.yaml."""

    def __init__(self) -> None:
        layout = codes.national_layout()
        systems = codes.code_systems()
        self.columns: list[str] = layout["columns"]
        self.width = len(self.columns)
        self.id_patterns = {
            code: (spec["name"], re.compile(spec["pattern"]))
            for code, spec in layout["identifier_types"].items()
        }
        patterns = layout["structure_identifier_patterns"]
        self.finess = re.compile(patterns["finess"])
        self.siret = re.compile(patterns["siret"])
        self.max_rejected_share = float(layout["max_rejected_share_for_deactivation"])
        self.prefixes: dict[str, str] = systems["civility_prefix"]
        self.specialty_by_type: dict[str, str] = systems["specialty_by_type"]
        self.default_specialty: str = systems["default_specialty"]
        prefix = codes.identifiers()["idnat_struct_prefix"]
        self.finess_prefix, self.siret_prefix = prefix["finess"], prefix["siret"]

    def check_header(self, header: bytes) -> None:
        text = header.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
        names = text.split("|")
        if names and names[-1] == "":
            names.pop()
        if names != self.columns:
            missing = [name for name in self.columns if name not in names]
            detail = f"missing columns: {', '.join(missing[:5])}" if missing else "columns differ"
            raise BadRequest(
                f"not a PS_LibreAcces_Personne_activite extract: expected {self.width} columns "
                f"beginning {self.columns[0]!r}, found {len(names)} ({detail})"
            )


def split_line(raw: bytes, layout: _Layout) -> list[str]:
    """The 52 fields of a data line ('' when empty), or Rejected saying why."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected("bad encoding", f"not UTF-8 at byte {error.start}") from None
    fields = text.rstrip("\r\n").split("|")
    count = len(fields)
    if count == layout.width + 1 and fields[-1] == "":
        fields.pop()  # the usual trailing '|'
    elif count != layout.width:
        got = count - 1 if fields[-1] == "" else count
        raise Rejected("wrong column count", f"{got} columns, expected {layout.width}")
    id_type, number, idnat = fields[0], fields[1], fields[2]
    checked = layout.id_patterns.get(id_type)
    if checked is None:
        raise Rejected("bad identifier", f"unknown identifier type {id_type!r}")
    if not checked[1].match(number):
        raise Rejected("bad identifier", f"{number!r} is not a valid {checked[0]} number")
    if idnat != id_type + number:
        raise Rejected("bad identifier", f"idNat_PS {idnat!r} is not {id_type!r}+{number!r}")
    finess, siret = fields[21], fields[19]
    if finess and not layout.finess.match(finess):
        raise Rejected("bad identifier", f"FINESS {finess!r} is malformed")
    if siret and not layout.siret.match(siret):
        raise Rejected("bad identifier", f"SIRET {siret!r} is malformed")
    return fields


def _street(f: list[str]) -> str:
    # Numéro Voie, Indice répétition, Libellé type de voie, Libellé Voie
    return " ".join([part for part in (f[28], f[29], f[31], f[32]) if part])


def _digest(data: bytes) -> str:
    return blake2b(data, digest_size=12).hexdigest()


# Role and practitioner rows hold '' for an absent value: the extract pads nothing, and the
# Upserters of this importer write '' as NULL (blank_is_null). Fields are used as they come:
# stripping or normalising 52 values per line would cost a tenth of the import.
def role_row(key: str, f: list[str], line_hash: str, layout: _Layout) -> tuple[str, ...]:
    """The PractitionerRole row of one line, in NATIONAL_ROLE_COLUMNS order."""
    savoir_faire = f[15]
    specialty_system = (
        layout.specialty_by_type.get(f[13], layout.default_specialty) if savoir_faire else ""
    )
    finess, siret = f[21], f[19]
    site = f[46] or (
        layout.finess_prefix + finess if finess else (layout.siret_prefix + siret if siret else "")
    )
    return (
        key, f[2], KIND, line_hash, f[9], f[10], specialty_system, savoir_faire, f[16], f[17],
        f[48], site, finess, siret, f[24] or f[25], _street(f), f[35], f[37], f[40], f[41], f[42],
        f[43],
    )  # fmt: skip


def practitioner_row(f: list[str], role: tuple[str, ...], layout: _Layout) -> tuple[str, ...]:
    """The Practitioner row from a professional's first line, in PRACTITIONER_COLUMNS order."""
    type_name = layout.id_patterns[f[0]][0]
    family, given = f[7], f[8]
    identity = "|".join(f[:PERSON_COLUMNS]) + "|" + f[15]
    return (
        f[2], type_name, f[1] if type_name == "RPPS" else "", layout.prefixes.get(f[3], f[3]),
        family, given, fold(family) or "", fold(given) or "", f[9], f[10], f[11], role[6],
        role[7], role[8], KIND, _digest(identity.encode()),
    )  # fmt: skip


def organization_row(role: tuple[str, ...]) -> tuple[Any, ...]:
    """The Organization row of a line's site, in ORGANIZATION_COLUMNS order."""
    # idNat_Struct, FINESS, SIRET, name, street, postcode, city, phone, e-mail, sector; None for
    # an absent value, as the hash of already imported structures was computed with None.
    content = tuple(role[at] or None for at in (11, 12, 13, 14, 15, 16, 17, 18, 21, 10))
    return (*content, KIND, _digest("|".join(map(str, content)).encode()))


# A chunk on its way to the database: Practitioner, Organization and PractitionerRole rows.
# Through the pipe to the writer process, role and practitioner rows travel as one string each,
# fields joined by FIELD_SEPARATOR: pickling 40 strings per line would cost as much as inserting
# them. A chunk in which a field holds the separator itself travels as tuples.
Chunk = tuple[list[Any], list[tuple[Any, ...]], list[Any]]
FIELD_SEPARATOR = "\x1f"  # ASCII unit separator
ENTITIES = ("practitioners", "organizations", "roles")


def _rows(rows: list[Any]) -> dict[str, Any]:
    """Rows by business key; joined rows split back into their fields."""
    if rows and isinstance(rows[0], str):
        split = FIELD_SEPARATOR
        return {fields[0]: fields for fields in (tuple(row.split(split)) for row in rows)}
    return {row[0]: row for row in rows}


class RowWriter:
    """Writes a chunk's Practitioner, Organization and PractitionerRole rows in one
    transaction: in the importer's process, or in the writer process process."""

    def __init__(self, run_id: int, fresh: bool) -> None:
        self.run_id = run_id
        self.fresh = fresh
        self.upserters = {
            "practitioners": Upserter(
                DirectoryPractitioner,
                PRACTITIONER_COLUMNS,
                "content_hash",
                run_id,
                blank_is_null=True,
            ),
            "organizations": Upserter(
                DirectoryOrganization, ORGANIZATION_COLUMNS, "content_hash", run_id
            ),
            "roles": Upserter(
                DirectoryRole, NATIONAL_ROLE_COLUMNS, "line_hash", run_id, blank_is_null=True
            ),
        }

    def write(self, connection: Any, chunk: Chunk) -> dict[str, tuple[int, int, int]]:
        """Per entity: rows inserted, updated, unchanged."""
        counts: dict[str, tuple[int, int, int]] = {}
        with connection.begin():
            write = Upserter.insert_new if self.fresh else Upserter.apply
            for entity, rows in zip(ENTITIES, chunk, strict=True):
                outcome = write(self.upserters[entity], connection, _rows(rows))
                counts[entity] = (
                    len(outcome.inserted),
                    len(outcome.updated),
                    len(outcome.unchanged),
                )
        return counts

    def result(self) -> dict[str, bytearray]:
        """The row ids each table saw, for the deactivation at the end."""
        return {entity: upserter.seen_ids() for entity, upserter in self.upserters.items()}


def _for_pipe(chunk: Chunk, joinable: bool) -> Chunk:
    if not joinable:
        return chunk
    people, structures, activities = chunk
    join = FIELD_SEPARATOR.join
    return [join(row) for row in people], structures, [join(row) for row in activities]


class NationalImporter:
    def __init__(
        self,
        engine: Engine,
        *,
        on_reject: RejectionCallback | None = None,
        progress: ProgressCallback | None = None,
        chunk_lines: int = CHUNK_LINES,
        full: bool = True,
        fork_writer: bool = True,
        row_writer: Callable[[int, bool], RowWriter] | None = None,
    ) -> None:
        self.engine = engine
        self.on_reject = on_reject
        self.progress = progress
        self.chunk_lines = chunk_lines
        self.full = full
        self.fork_writer = fork_writer and can_share(engine)
        # a module-level class or function: the writer process gets it by name (pickled)
        self.row_writer = row_writer or RowWriter
        self.fresh = False  # importing into empty tables: plain inserts, no look-ups
        self.writer_process: WriterProcess | None = None
        self.layout = _Layout()
        self.entities: dict[str, Counter[str]] = {name: Counter() for name in ENTITIES}

    def run(self, stream: BinaryIO, source_name: str) -> ImportSummary:
        # The loop allocates millions of short-lived tuples and keeps a chunk of them alive:
        # the cyclic garbage collector would rescan those chunks over and over (a tenth of the
        # run) and finds nothing, as rows hold no cycles. Paused for the import, then restored.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run(stream, source_name)
        finally:
            if collecting:
                gc.enable()

    def _run(self, stream: BinaryIO, source_name: str) -> ImportSummary:
        started = time.perf_counter()
        header = stream.readline()
        if not header.strip():
            raise BadRequest(f"{source_name} is empty: no header line")
        self.layout.check_header(header)
        summary = ImportSummary(KIND, source_name, entities=self.entities)
        run_id = start_run(self.engine, KIND, source_name, full=self.full)
        summary.run_id = run_id
        tables = [table_of(model) for model in (DirectoryPractitioner, DirectoryRole)]
        tables.append(table_of(DirectoryOrganization))
        with (
            self.engine.connect() as connection,
            bulk_settings(connection),
            deferred_indexes(connection, tables) as self.fresh,
        ):
            writer = self.row_writer(run_id, self.fresh)
            try:
                self._read(stream, len(header), connection, writer, summary)
            finally:
                if self.writer_process is not None:  # stopped after the chunk in hand, if any,
                    self.writer_process.close()  # and before the indexes are rebuilt
                    self.writer_process = None
            if self.full:
                self._deactivate_unseen(connection, writer, summary)
        summary.seconds = time.perf_counter() - started
        finish_run(self.engine, summary)
        return summary

    def _read(
        self,
        stream: BinaryIO,
        consumed: int,
        connection: Any,
        writer: RowWriter,
        summary: ImportSummary,
    ) -> None:
        """Read and check every line, handing chunks to the writer. The first chunk is written
        here; if the file has more, a writer process (`self.writer_process`) takes the next ones."""
        layout = self.layout
        chunk_lines = self.chunk_lines
        writer_process: WriterProcess | None = None
        read = 0
        last_idnat, ranks = "", dict[str, int]()
        people: list[tuple[str, ...]] = []
        structures: list[tuple[Any, ...]] = []
        activities: list[tuple[str, ...]] = []
        joinable = True  # no field of the chunk holds FIELD_SEPARATOR
        chunk_people: set[str] = set()
        chunk_sites: set[str] = set()
        # A site recurs on the lines of every professional working there, all over the file:
        # written once per run (first line wins), not once per chunk.
        sites_seen: set[str] = set()
        for line_number, raw in enumerate(stream, start=2):
            consumed += len(raw)
            if len(raw) < 3 and not raw.strip():
                continue
            read += 1
            try:
                values = split_line(raw, layout)
            except Rejected as rejected:
                rejection = summary.reject(line_number, rejected.reason, rejected.detail)
                if self.on_reject:
                    self.on_reject(rejection)
                continue
            idnat = values[2]
            # Activity identity: site, mode, profession, savoir-faire (+ rank if repeated).
            key = f"{idnat}|{values[23]}|{values[17]}|{values[9]}|{values[15]}"
            first_line = False
            if idnat != last_idnat:
                last_idnat, ranks = idnat, {key: 1}
                # a professional's lines follow each other in the extract: the first one is new
                if idnat not in chunk_people:
                    chunk_people.add(idnat)
                    first_line = True
            elif key in ranks:
                rank = ranks[key]
                ranks[key] = rank + 1
                key = f"{key}#{rank}"
            else:
                ranks[key] = 1
            if b"\x1f" in raw:
                joinable = False
            role = role_row(key, values, _digest(raw), layout)
            activities.append(role)
            if first_line:
                people.append(practitioner_row(values, role, layout))
            site = role[11]
            if site and site not in sites_seen and site not in chunk_sites:
                chunk_sites.add(site)
                structures.append(organization_row(role))
                if len(sites_seen) < MAX_SITES_REMEMBERED:
                    sites_seen.add(site)
            if len(activities) >= chunk_lines:
                summary.read = read
                chunk = (people, structures, activities)
                if writer_process is not None:
                    self._tally(writer_process.submit(_for_pipe(chunk, joinable)), summary)
                else:
                    self._tally(writer.write(connection, chunk), summary)
                del chunk
                people, structures, activities = [], [], []
                joinable, chunk_people, chunk_sites = True, set(), set()
                if writer_process is None and self.fork_writer:
                    writer_process = self.writer_process = WriterProcess(
                        self.engine,
                        partial(self.row_writer, writer.run_id, self.fresh),
                        bulk_settings,
                    )
                if self.progress:
                    self.progress(consumed)
        summary.read = read
        chunk = (people, structures, activities)
        if writer_process is not None:
            if activities:
                self._tally(writer_process.submit(_for_pipe(chunk, joinable)), summary)
            last, seen = writer_process.finish()
            self._tally(last, summary)
            for entity, ids in seen.items():
                writer.upserters[entity].merge_seen(ids)
        elif activities:
            self._tally(writer.write(connection, chunk), summary)
        if self.progress:
            self.progress(consumed)

    def _tally(
        self, counts: dict[str, tuple[int, int, int]] | None, summary: ImportSummary
    ) -> None:
        if counts is None:
            return
        for entity, (inserted, updated, unchanged) in counts.items():
            counter = self.entities[entity]
            counter["inserted"] += inserted
            counter["updated"] += updated
            counter["unchanged"] += unchanged
        inserted, updated, unchanged = counts["roles"]
        summary.inserted += inserted
        summary.updated += updated
        summary.unchanged += unchanged

    def _deactivate_unseen(
        self, connection: Any, writer: RowWriter, summary: ImportSummary
    ) -> None:
        if summary.read and summary.rejected / summary.read > self.layout.max_rejected_share:
            summary.notes.append(
                "nothing marked inactive: more than half of the lines were rejected"
            )
            return
        with connection.begin():
            for entity, upserter in writer.upserters.items():
                source = upserter.table.c.source == KIND
                self.entities[entity]["deactivated"] = upserter.deactivate_unseen(
                    connection, source
                )
        summary.deactivated = self.entities["practitioners"]["deactivated"]


def import_national(
    engine: Engine,
    stream: BinaryIO,
    source_name: str,
    *,
    on_reject: RejectionCallback | None = None,
    progress: ProgressCallback | None = None,
    full: bool = True,
) -> ImportSummary:
    """Import a PS_LibreAcces_Personne_activite stream (header line first)."""
    importer = NationalImporter(engine, on_reject=on_reject, progress=progress, full=full)
    return importer.run(stream, source_name)
