"""Synthetic national extracts (PS_LibreAcces_Personne_activite format) for tests and benchmarks.

Content depends only on the seed and the line's position, so two extracts made with the same
seed are identical except for the variations asked for: `change_every=10` rewrites the phone of
one line in ten (a changed activity), `drop_professionals_every=N` leaves out one professional in N
(a professional who left the directory). No real person is described: names are drawn from
small fixed lists and numbers are made up.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import BinaryIO

from adapter.directory import codes

_FAMILIES = [
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MULLER",
    "LEFEVRE",
    "FAURE",
    "ANDRE",
    "MERCIER",
    "BLANC",
    "GUERIN",
    "BOYER",
    "GARNIER",
    "CHEVALIER",
]
_GIVENS = [
    "Marie",
    "Jean",
    "Pierre",
    "Michel",
    "Anne",
    "Sophie",
    "Nathalie",
    "Isabelle",
    "Philippe",
    "Nicolas",
    "Camille",
    "Léa",
    "Hélène",
    "Céline",
    "François",
    "Stéphane",
    "Élodie",
    "Julien",
    "Aurélie",
    "Benoît",
    "Chloé",
    "Mathieu",
    "Inès",
    "Noël",
]
_CITIES = (
    ("75005", "75105", "Paris"),
    ("75015", "75115", "Paris"),
    ("69003", "69383", "Lyon"),
    ("13008", "13208", "Marseille"),
    ("31000", "31555", "Toulouse"),
    ("33000", "33063", "Bordeaux"),
    ("59000", "59350", "Lille"),
    ("67000", "67482", "Strasbourg"),
    ("44000", "44109", "Nantes"),
    ("35000", "35238", "Rennes"),
    ("25304", "25462", "Pontarlier"),
    ("06000", "06088", "Nice"),
)
_STREETS = ("de la République", "Victor Hugo", "du Général de Gaulle", "Pasteur", "des Écoles")
# (profession code, label, savoir-faire type, code, label)
_PROFESSIONS = (
    ("10", "Médecin", "S", "SM54", "Médecine générale (SM)"),
    ("10", "Médecin", "S", "SM04", "Cardiologie et maladies vasculaires (SM)"),
    ("10", "Médecin", "S", "SM27", "Médecine interne (SM)"),
    ("60", "Infirmier", "", "", ""),
    ("70", "Masseur-Kinésithérapeute", "", "", ""),
    ("21", "Pharmacien", "", "", ""),
    ("50", "Sage-Femme", "", "", ""),
)
_MODES = (("L", "Libéral"), ("S", "Salarié"))


def header() -> str:
    return "|".join(codes.national_layout()["columns"]) + "|"


@dataclass
class ExtractStats:
    lines: int = 0
    professionals: int = 0
    changed_lines: int = 0
    dropped_professionals: int = 0


def _site_range(n_lines: int) -> int:
    return max(1_000, n_lines // 8)  # several professionals share most sites


@lru_cache(maxsize=1 << 19)
def _site(site: int) -> tuple[str, str]:
    """The fields of a site before and after its phone: a site's address never changes."""
    postcode, insee, city = _CITIES[site % len(_CITIES)]
    mode = _MODES[site % 2]
    salaried = mode[0] == "S"
    finess = f"{postcode[:2]}{site:07d}" if salaried else ""
    siret = "" if salaried else f"{site:09d}{site % 99_999:05d}"
    name = f"CENTRE HOSPITALIER {city.upper()} {site}" if salaried else f"CABINET MEDICAL {site}"
    before = (
        mode[0], mode[1], siret, siret[:9], finess, "", f"{'F' if finess else 'R'}{site:08d}",
        name, "", "", "", str(site % 199 + 1), "", "R", "Rue", _STREETS[site % 5], "",
        f"{postcode} {city.upper()}", postcode, insee, city, "", "",
    )  # fmt: skip
    structure = f"1{finess}" if finess else f"3{siret}"
    after = (
        "", "", f"contact{site}@exemple.fr", postcode[:2], "", structure, "CNOM/CNOM/ARS",
        "SA01" if finess else "SA07",
        "Etablissement public de santé" if finess else "Cabinet individuel", "", "",
    )  # fmt: skip
    return "|".join(before), "|".join(after)


@cache
def _person_fields(profession: int, family: int, given: int) -> tuple[str, str]:
    """A professional's fields around their identifier: (civilities and names, profession)."""
    code, label, sf_type, sf_code, sf_label = _PROFESSIONS[profession]
    civility = "DR|Docteur" if code == "10" else "M|Monsieur"
    names = f"{civility}|M|Monsieur|{_FAMILIES[family]}|{_GIVENS[given]}"
    sf_type_label = "Spécialité ordinale" if sf_type else ""
    return names, f"{code}|{label}|C|Civil|{sf_type}|{sf_type_label}|{sf_code}|{sf_label}"


def _changed_phone(phone: str) -> str:
    changed = "06" + phone[2:][::-1]
    # a 06 number with palindromic digits would come out the same: a change must change
    return changed if changed != phone else "07" + phone[2:]


def national_line_pairs(
    n_lines: int,
    *,
    seed: int = 1,
    change_every: int | None = None,
    drop_professionals_every: int | None = None,
    stats: ExtractStats | None = None,
    part: tuple[int, int] = (0, 1),
) -> Iterator[tuple[str, str | None]]:
    """Each data line (without the header) and, with `change_every`, the same line with one in
    `change_every` lines changed (None when the line is not changed). `part=(k, parts)` makes
    the k-th of `parts` pieces of an extract of `n_lines`: its own professionals, shared sites."""
    index, parts = part
    # random() and a product: several times cheaper than randrange, and enough for made-up data
    draw = random.Random(seed * 1_000 + index if parts > 1 else seed).random
    stats = stats or ExtractStats()
    sites_range = _site_range(n_lines) - 1
    share = n_lines // parts
    first_line = index * share
    n_lines = share if index < parts - 1 else n_lines - first_line
    professions, families, givens = len(_PROFESSIONS), len(_FAMILIES), len(_GIVENS)
    change_every = change_every or 0
    drop_every = drop_professionals_every or 0
    site_fields: dict[int, tuple[str, str]] = {}  # at most n_lines / 8 sites
    position = kept = dropped = changed = lines = 0
    professional = first_line  # a piece never has more professionals than lines
    while position < n_lines:
        professional += 1
        roll = draw()
        activities = min(1 if roll < 0.55 else (2 if roll < 0.9 else 3), n_lines - position)
        names, profession = _person_fields(
            int(draw() * professions), int(draw() * families), int(draw() * givens)
        )
        sites = [
            (1 + int(draw() * sites_range), f"0{100_000_000 + int(draw() * 899_999_999)}")
            for _ in range(activities)
        ]
        if drop_every and professional % drop_every == 0:
            dropped += 1
            position += activities
            continue
        kept += 1
        if professional % 50 == 0:
            id_type, number = "0", f"75{professional % 10_000_000:07d}"  # an ADELI number
        else:
            id_type, number = "8", f"1{professional:010d}"
        person = f"{id_type}|{number}|{id_type}{number}|{names}|{profession}|"
        for site, phone in sites:
            position += 1
            lines += 1
            fields = site_fields.get(site)
            if fields is None:
                before, after = _site(site)
                fields = site_fields[site] = (f"{before}|", f"|{after}|")
            line = person + fields[0] + phone + fields[1]
            if change_every and position % change_every == 0:
                changed += 1
                yield line, person + fields[0] + _changed_phone(phone) + fields[1]
            else:
                yield line, None
    stats.lines += lines
    stats.professionals += kept
    stats.dropped_professionals += dropped
    stats.changed_lines += changed


def write_national_extract(
    path: Path,
    n_lines: int,
    *,
    seed: int = 1,
    change_every: int | None = None,
    drop_professionals_every: int | None = None,
    extra_lines: tuple[bytes, ...] = (),
    changed_copy: Path | None = None,
    workers: int = 1,
) -> ExtractStats:
    """Write a complete extract (header, lines, then `extra_lines` as given) to `path`.

    With `changed_copy`, the same pass also writes there the same extract with one line in
    `change_every` changed (and `path` gets the unchanged lines); without it, `path` gets the
    changed lines. `workers` > 1 writes pieces in parallel processes (other content, same shape).
    """
    if workers > 1 and n_lines >= 100 * workers:
        return _write_in_pieces(
            path, n_lines, seed, change_every, drop_professionals_every, extra_lines, workers
        )
    stats = ExtractStats()
    pairs = national_line_pairs(
        n_lines,
        seed=seed,
        change_every=change_every,
        drop_professionals_every=drop_professionals_every,
        stats=stats,
    )
    _write(path, pairs, extra_lines, changed_copy)
    return stats


def _write_piece(
    path: Path,
    n_lines: int,
    seed: int,
    change_every: int | None,
    drop: int | None,
    part: tuple[int, int],
) -> ExtractStats:
    stats = ExtractStats()
    pairs = national_line_pairs(
        n_lines,
        seed=seed,
        change_every=change_every,
        drop_professionals_every=drop,
        stats=stats,
        part=part,
    )
    with path.open("wb") as handle:
        batch: list[str] = []
        for line, changed in pairs:
            batch.append(changed or line)
            if len(batch) >= 20_000:
                _write_batch(handle, batch)
                batch = []
        _write_batch(handle, batch)
    return stats


def _write_in_pieces(
    path: Path,
    n_lines: int,
    seed: int,
    change_every: int | None,
    drop: int | None,
    extra_lines: tuple[bytes, ...],
    workers: int,
) -> ExtractStats:
    pieces = [path.with_name(f"{path.name}.{index}") for index in range(workers)]
    jobs = [
        (piece, n_lines, seed, change_every, drop, (index, workers))
        for index, piece in enumerate(pieces)
    ]
    # spawned, not forked: a fork would copy locks other threads of the caller hold
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.starmap(_write_piece, jobs)
    total = ExtractStats()
    with path.open("wb") as handle:
        handle.write((header() + "\n").encode("utf-8"))
        for piece in pieces:
            with piece.open("rb") as source:
                shutil.copyfileobj(source, handle, 1 << 22)
            piece.unlink()
        for raw in extra_lines:
            handle.write(raw.rstrip(b"\n") + b"\n")
    for result in results:
        total.lines += result.lines
        total.professionals += result.professionals
        total.changed_lines += result.changed_lines
        total.dropped_professionals += result.dropped_professionals
    return total


def _write(
    path: Path,
    pairs: Iterator[tuple[str, str | None]],
    extra_lines: tuple[bytes, ...],
    changed_copy: Path | None,
) -> None:
    head = (header() + "\n").encode("utf-8")
    tail = b"".join(raw.rstrip(b"\n") + b"\n" for raw in extra_lines)
    with ExitStack() as files:
        original = files.enter_context(path.open("wb"))
        copy = files.enter_context(changed_copy.open("wb")) if changed_copy else None
        for handle in (original, copy):
            if handle:
                handle.write(head)
        batch: list[str] = []
        changed_batch: list[str] = []
        for line, changed in pairs:
            batch.append(line if copy else changed or line)
            if copy:
                changed_batch.append(changed or line)
            if len(batch) >= 20_000:
                _write_batch(original, batch)
                if copy:
                    _write_batch(copy, changed_batch)
                batch, changed_batch = [], []
        _write_batch(original, batch)
        original.write(tail)
        if copy:
            _write_batch(copy, changed_batch)
            copy.write(tail)


def _write_batch(handle: BinaryIO, lines: list[str]) -> None:
    if lines:
        handle.write(("\n".join(lines) + "\n").encode("utf-8"))
