"""Opening a directory file: plain extract, extract inside its .zip, FHIR Bundle, local CSV —
and telling which one it is from its name and first line."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from adapter.directory import codes
from adapter.errors import BadRequest

NATIONAL = "national"
MSSANTE = "mssante"
FHIR = "fhir"
LOCAL = "local"
KINDS = (NATIONAL, MSSANTE, FHIR, LOCAL)


@dataclass
class OpenedSource:
    kind: str
    name: str  # file (or zip member) name, for the run record
    stream: BinaryIO
    size: int | None  # bytes to read, for the progress bar


def _kind_from_first_line(first_line: bytes, name: str) -> str | None:
    head = first_line.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if head.startswith(codes.national_layout()["columns"][0] + "|"):
        return NATIONAL
    if head.startswith(codes.mssante_layout()["columns"][0] + "|"):
        return MSSANTE
    if head.startswith("{") or name.lower().endswith(".json"):
        return FHIR
    if name.lower().endswith(".csv"):
        return LOCAL
    return None


def _pick_zip_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    # PS_LibreAcces_<date>.zip also holds the SavoirFaire and Dipl_AutExerc files: take activities.
    prefixes = (
        codes.national_layout()["file_name_prefix"],
        codes.mssante_layout()["file_name_prefix"],
    )
    members = [info for info in archive.infolist() if not info.is_dir()]
    for prefix in prefixes:
        for info in members:
            if Path(info.filename).name.startswith(prefix):
                return info
    if len(members) == 1:
        return members[0]
    names = ", ".join(info.filename for info in members) or "nothing"
    raise BadRequest(
        "the archive holds no PS_LibreAcces_Personne_activite or MSSanté extract "
        f"(it holds {names})"
    )


@contextmanager
def open_source(path: Path, kind: str | None = None) -> Iterator[OpenedSource]:
    """Open `path` for reading, looking inside a .zip; `kind` forces the format."""
    if not path.is_file():
        raise BadRequest(f"{path} is not a readable file")
    if kind is not None and kind not in KINDS:
        raise BadRequest(f"unknown directory format {kind!r}; expected one of {', '.join(KINDS)}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            member = _pick_zip_member(archive)
            with archive.open(member) as raw:
                buffered = io.BufferedReader(cast(io.RawIOBase, raw), buffer_size=1 << 20)
                detected = kind or _kind_from_first_line(buffered.peek(4096), member.filename)
                yield OpenedSource(
                    _require(detected, member.filename), member.filename, buffered,
                    member.file_size)
        return
    with path.open("rb", buffering=1 << 20) as opened:
        plain = cast(io.BufferedReader, opened)  # (typeshed: BinaryIO when buffering is given)
        detected = kind or _kind_from_first_line(plain.peek(4096).split(b"\n", 1)[0], path.name)
        yield OpenedSource(_require(detected, path.name), path.name, plain, path.stat().st_size)


def _require(kind: str | None, name: str) -> str:
    if kind is None:
        raise BadRequest(
            f"{name}: not a directory file liaison knows (national PS_LibreAcces extract, "
            "MSSanté extract, FHIR Bundle .json or local directory .csv)"
        )
    return kind
