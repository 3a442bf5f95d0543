"""Importer of a local CPTS / MSP directory kept as CSV (columns in
mappings/directory/local_csv.yaml and adapter/directory/README.md).

Each row is a person with a role in the CPTS. People with a national identifier already known
from the national extract keep their national identity; the row adds a local PractitionerRole
(role, territory, phone, MSSanté). People unknown nationally are created as local professionals.
A file is the full directory of the CPTS it names: roles of that CPTS absent from it are marked
inactive.
"""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any, BinaryIO

from sqlalchemy.engine import Connection, Engine

from adapter.directory import codes
from adapter.directory.text import content_hash, fold
from adapter.directory.writer import (
    ImportSummary,
    ProgressCallback,
    Rejected,
    RejectionCallback,
    Upserter,
    finish_run,
    start_run,
)
from adapter.errors import BadRequest
from adapter.store.directory_tables import (
    PRACTITIONER_COLUMNS,
    ROLE_COLUMNS,
    DirectoryPractitioner,
    DirectoryRole,
)

KIND = "local"
_PROGRESS_EVERY = 1000  # rows between two progress reports (bytes read)
_IDNAT = re.compile(r"^(8[0-9]{11}|0[0-9][0-9AB][0-9]{7})$")  # '8'+RPPS | '0'+ADELI
_RPPS = re.compile(r"^[0-9]{11}$")
_FINESS = re.compile(r"^[0-9][0-9AB][0-9]{7}$")  # département (2A/2B) + 7 digits
_POSTCODE_TOKEN = re.compile(
    r"^([0-9]{5}(-[0-9]{5})?|[0-9]{1,4}\*)$"  # postcode, range of postcodes, or prefix*
)
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCAL_ID = re.compile(r"[^A-Za-z0-9]+")


def _decoded_lines(
    stream: BinaryIO,
    summary: ImportSummary,
    position: list[int],
    on_reject: RejectionCallback | None,
) -> Iterator[str]:
    """Lines as text; a line that is not UTF-8 is rejected on its own. `position`: [the line
    number, the bytes read so far]."""
    for number, raw in enumerate(stream, start=1):
        position[0] = number
        position[1] += len(raw)
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            summary.read += 1
            rejection = summary.reject(number, "bad encoding", f"not UTF-8 at byte {error.start}")
            if on_reject:
                on_reject(rejection)
            continue
        yield text


def _cell(row: dict[str, str | None], name: str) -> str | None:
    value = row.get(name)
    return value.strip() or None if value else None


def _identity(row: dict[str, str | None], cpts_id: str) -> tuple[str, str, str | None]:
    """(idnat, id type, rpps) of a row, validating what it gives."""
    idnat, rpps = _cell(row, "idnat_ps"), _cell(row, "rpps")
    if rpps and not _RPPS.match(rpps):
        raise Rejected("bad identifier", f"RPPS {rpps!r} is not 11 digits")
    if idnat and not _IDNAT.match(idnat):
        raise Rejected("bad identifier", f"idNat_PS {idnat!r} is malformed")
    if rpps and idnat and idnat != "8" + rpps:
        raise Rejected("bad identifier", f"idNat_PS {idnat!r} is not '8'+RPPS {rpps!r}")
    if rpps or (idnat and idnat.startswith("8")):
        rpps = rpps or (idnat or "")[1:]
        return "8" + rpps, "RPPS", rpps
    if idnat:
        return idnat, "ADELI", None
    local_id = _cell(row, "local_id") or " ".join(
        part for part in (_cell(row, "family"), _cell(row, "given")) if part
    )
    token = _LOCAL_ID.sub("-", fold(local_id) or "").strip("-").lower()
    return f"local-{_LOCAL_ID.sub('-', cpts_id).lower()}-{token}"[:64], "LOCAL", None


def _check_contacts(row: dict[str, str | None]) -> None:
    territory = _cell(row, "territory_postcodes")
    for token in (territory or "").replace(",", " ").split():
        if not _POSTCODE_TOKEN.match(token):
            raise Rejected("bad territory", f"{token!r} is not a postcode, range or prefix*")
    mailbox = _cell(row, "mssante")
    if mailbox and not _ADDRESS.match(mailbox):
        raise Rejected("bad mailbox address", f"{mailbox!r} is not an e-mail address")
    finess = _cell(row, "structure_finess")
    if finess and not _FINESS.match(finess):
        raise Rejected("bad identifier", f"FINESS {finess!r} is malformed")


def rows_of(
    row: dict[str, str | None], default_cpts: str
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(practitioner row, role row) of one CSV row, or Rejected."""
    family = _cell(row, "family")
    if not family:
        raise Rejected("missing name", "the 'family' column is empty")
    cpts_id = _cell(row, "cpts_id") or default_cpts
    idnat, id_type, rpps = _identity(row, cpts_id)
    _check_contacts(row)
    given = _cell(row, "given")
    specialty = _cell(row, "specialty_code")
    specialty_system = codes.code_systems()["default_specialty"] if specialty else None
    profession_code, profession = _cell(row, "profession_code"), _cell(row, "profession")
    person: tuple[Any, ...] = (
        idnat,
        id_type,
        rpps,
        _cell(row, "prefix"),
        family,
        given,
        fold(family),
        fold(given),
        profession_code,
        profession,
        None,
        specialty_system,
        specialty,
        _cell(row, "specialty"),
        KIND,
    )
    person = (*person, content_hash("|".join(str(value) for value in person)))
    finess = _cell(row, "structure_finess")
    local_role = _cell(row, "role")
    structure = _cell(row, "structure")
    role_values = (
        idnat,
        KIND,
        profession_code,
        profession,
        specialty_system,
        specialty,
        _cell(row, "specialty"),
        None,
        None,
        "1" + finess if finess else None,
        finess,
        None,
        structure,
        _cell(row, "address"),
        _cell(row, "postcode"),
        _cell(row, "commune"),
        _cell(row, "phone"),
        None,
        None,
        _cell(row, "email"),
        _cell(row, "mssante"),
        local_role,
        cpts_id,
        _cell(row, "territory_postcodes"),
    )
    digest = content_hash("|".join(str(value) for value in role_values))
    key = f"{idnat}|{KIND}|{cpts_id}|{local_role or ''}|{structure or ''}"[:200]
    role = (key, *role_values[:2], digest, *role_values[2:])
    return person, role


def _known_elsewhere(connection: Connection, idnats: list[str]) -> set[str]:
    """Professionals another source (national extract, FHIR) owns: the CSV does not rewrite them."""
    if not idnats:
        return set()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        "SELECT idnat FROM directory_practitioner WHERE source <> "
        f"{mark} AND idnat IN ({', '.join([mark] * len(idnats))})"
    )
    return {idnat for (idnat,) in connection.exec_driver_sql(sql, (KIND, *idnats))}


def import_local_csv(
    engine: Engine,
    stream: BinaryIO,
    source_name: str,
    *,
    on_reject: RejectionCallback | None = None,
    progress: ProgressCallback | None = None,
    full: bool = True,
) -> ImportSummary:
    """Import a local CPTS directory CSV; rows without a cpts_id belong to the file's stem."""
    started = time.perf_counter()
    counts: dict[str, Counter[str]] = {"practitioners": Counter(), "roles": Counter()}
    summary = ImportSummary(KIND, source_name, entities=counts)
    position = [0, 0]
    lines = _decoded_lines(stream, summary, position, on_reject)
    header = next(lines, "")
    layout = codes.local_layout()
    delimiter = max(layout["delimiter_candidates"], key=header.count)
    names = [name.strip().lower() for name in next(csv.reader([header], delimiter=delimiter), [])]
    # columns the layout does not know are ignored, not refused: CPTS keep extra notes in them
    known = set(layout["columns"])
    names = [name if name in known else f"ignored:{name}" for name in names]
    if "family" not in names:
        raise BadRequest(
            f"{source_name}: a local directory CSV needs a 'family' column "
            f"(found {', '.join(names)})"
        )
    default_cpts = PurePath(source_name).stem
    summary.run_id = start_run(engine, KIND, source_name, full=full)
    practitioners = Upserter(
        DirectoryPractitioner, PRACTITIONER_COLUMNS, "content_hash", summary.run_id
    )
    roles = Upserter(DirectoryRole, ROLE_COLUMNS, "line_hash", summary.run_id)
    people: dict[str, tuple[Any, ...]] = {}
    activities: dict[str, tuple[Any, ...]] = {}
    cpts_seen: set[str] = set()
    for cells in csv.reader(lines, delimiter=delimiter):
        if not any(cell.strip() for cell in cells):
            continue
        summary.read += 1
        if len(cells) != len(names):
            rejection = summary.reject(
                position[0], "wrong column count", f"{len(cells)} columns, expected {len(names)}"
            )
            if on_reject:
                on_reject(rejection)
            continue
        try:
            person, role = rows_of(dict(zip(names, cells, strict=True)), default_cpts)
        except Rejected as rejected:
            rejection = summary.reject(position[0], rejected.reason, rejected.detail)
            if on_reject:
                on_reject(rejection)
            continue
        people.setdefault(person[0], person)
        activities[role[0]] = role
        if progress and summary.read % _PROGRESS_EVERY == 0:
            progress(position[1])
        cpts_seen.add(role[ROLE_COLUMNS.index("cpts_id")])
    with engine.begin() as connection:
        national = _known_elsewhere(connection, list(people))
        local_people = {idnat: row for idnat, row in people.items() if idnat not in national}
        for name, outcome in (
            ("practitioners", practitioners.apply(connection, local_people)),
            ("roles", roles.apply(connection, activities)),
        ):
            for field in ("inserted", "updated", "unchanged"):
                counts[name][field] += len(getattr(outcome, field))
        summary.inserted = counts["roles"]["inserted"]
        summary.updated = counts["roles"]["updated"]
        summary.unchanged = counts["roles"]["unchanged"]
        if full and cpts_seen:
            source = roles.table.c.source == KIND
            in_cpts = roles.table.c.cpts_id.in_(sorted(cpts_seen))
            counts["roles"]["deactivated"] = roles.deactivate_unseen(connection, source, in_cpts)
            summary.deactivated = counts["roles"]["deactivated"]
    if progress:
        progress(position[1])
    summary.seconds = time.perf_counter() - started
    finish_run(engine, summary)
    return summary
