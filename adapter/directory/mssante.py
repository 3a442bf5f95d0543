"""Importer of the MSSanté correspondence extract (Extraction_Correspondance_MSSante): one line per
secure mailbox (BAL), with the professional (idNat_PS) or structure (idNat_Struct) it belongs to.

Mailboxes are kept in their own table, keyed by address and owner, and joined to professionals
and structures at look-up time: the extract and the national one are published separately.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from adapter.directory import codes
from adapter.directory.text import content_hash
from adapter.directory.writer import (
    ImportSummary,
    ProgressCallback,
    Rejected,
    RejectionCallback,
    Upserter,
    bulk_settings,
    finish_run,
    start_run,
)
from adapter.errors import BadRequest
from adapter.store.directory_tables import MAILBOX_COLUMNS, DirectoryMailbox

KIND = "mssante"
CHUNK_LINES = 10_000
_ADDRESS = re.compile(r"^[^@\s|]+@[^@\s|]+\.[^@\s|]+$")
_TRUE = {"true", "o", "oui", "1", "y", "yes", "vrai"}
_FALSE = {"false", "n", "non", "0", "no", "faux"}


class _Layout:
    def __init__(self) -> None:
        layout = codes.mssante_layout()
        national = codes.national_layout()
        self.columns: list[str] = layout["columns"]
        self.width = len(self.columns)
        self.types = set(layout["mailbox_types"])
        self.id_patterns = {
            code: (spec["name"], re.compile(spec["pattern"]))
            for code, spec in national["identifier_types"].items()
        }

    def check_header(self, header: bytes) -> None:
        names = header.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n").split("|")
        if names and names[-1] == "":
            names.pop()
        if names != self.columns:
            raise BadRequest(
                f"not an Extraction_Correspondance_MSSante extract: expected {self.width} columns "
                f"beginning {self.columns[0]!r}, found {len(names)}"
            )


def _digitization(value: str | None) -> bool | None:
    if not value:
        return None
    lowered = value.lower()
    return True if lowered in _TRUE else (False if lowered in _FALSE else None)


def parse_line(raw: bytes, layout: _Layout) -> tuple[Any, ...]:
    """The mailbox row (MAILBOX_COLUMNS order) of one line, or Rejected."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected("bad encoding", f"not UTF-8 at byte {error.start}") from None
    fields = text.rstrip("\r\n").split("|")
    if len(fields) == layout.width + 1 and fields[-1] == "":
        fields.pop()
    if len(fields) != layout.width:
        raise Rejected("wrong column count", f"{len(fields)} columns, expected {layout.width}")
    values = [field.strip() or None for field in fields]
    mailbox_type, address = values[0], values[1]
    if mailbox_type not in layout.types:
        raise Rejected("bad mailbox type", f"{mailbox_type!r} is not one of PER, ORG, APP, CAB")
    if not address or not _ADDRESS.match(address):
        raise Rejected("bad mailbox address", f"{address!r} is not an e-mail address")
    idnat = values[4]
    if values[2] or values[3] or idnat:
        checked = layout.id_patterns.get(values[2] or "")
        if checked is None or not checked[1].match(values[3] or ""):
            raise Rejected(
                "bad identifier", f"{values[2]!r}/{values[3]!r} is not an RPPS/ADELI"
            )
        if idnat != (values[2] or "") + (values[3] or ""):
            raise Rejected("bad identifier", f"idNat_PS {idnat!r} does not match")
    structure = values[6]
    if structure and values[5] and not structure.startswith(values[5]):
        # assumption: "Identification Structure" carries idNat_Struct; add the type prefix if not
        structure = values[5] + structure
    if not idnat and not structure:
        raise Rejected(
            "bad identifier", "the mailbox names neither a professional nor a structure"
        )
    row = (
        f"{address.lower()}|{idnat or ''}|{structure or ''}",
        address,
        mailbox_type,
        idnat,
        structure,
        values[7],
        _digitization(values[17]),
        values[9],
        values[10],
        values[8],
        values[13],
        values[14],
        values[18] or values[19],
        KIND,
    )
    return (*row, content_hash(raw))


def import_mssante(
    engine: Engine,
    stream: BinaryIO,
    source_name: str,
    *,
    on_reject: RejectionCallback | None = None,
    progress: ProgressCallback | None = None,
    full: bool = True,
) -> ImportSummary:
    """Import an Extraction_Correspondance_MSSante stream (header line first)."""
    started = time.perf_counter()
    layout = _Layout()
    header = stream.readline()
    if not header.strip():
        raise BadRequest(f"{source_name} is empty: no header line")
    layout.check_header(header)
    counts: Counter[str] = Counter()
    summary = ImportSummary(KIND, source_name, entities={"mailboxes": counts})
    summary.run_id = start_run(engine, KIND, source_name, full=full)
    mailboxes = Upserter(DirectoryMailbox, MAILBOX_COLUMNS, "content_hash", summary.run_id)
    consumed = len(header)
    batch: dict[str, tuple[Any, ...]] = {}

    def write(connection: Any) -> None:
        with connection.begin():
            outcome = mailboxes.apply(connection, batch)
        for name in ("inserted", "updated", "unchanged"):
            summary.count(name, len(getattr(outcome, name)))
            counts[name] += len(getattr(outcome, name))

    with engine.connect() as connection, bulk_settings(connection):
        for line_number, raw in enumerate(stream, start=2):
            consumed += len(raw)
            if not raw.strip():
                continue
            summary.read += 1
            try:
                row = parse_line(raw, layout)
            except Rejected as rejected:
                rejection = summary.reject(line_number, rejected.reason, rejected.detail)
                if on_reject:
                    on_reject(rejection)
                continue
            batch[row[0]] = row
            if len(batch) >= CHUNK_LINES:
                write(connection)
                batch = {}
                if progress:
                    progress(consumed)
        if batch:
            write(connection)
        if progress:
            progress(consumed)
        if full and summary.read and summary.rejected / summary.read > 0.5:
            summary.notes.append(
                "nothing marked inactive: more than half of the lines were rejected"
            )
        elif full:
            with connection.begin():
                counts["deactivated"] = mailboxes.deactivate_unseen(
                    connection, mailboxes.table.c.source == KIND
                )
            summary.deactivated = counts["deactivated"]
    summary.seconds = time.perf_counter() - started
    finish_run(engine, summary)
    return summary
