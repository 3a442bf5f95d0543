"""Importing the national PS_LibreAcces_Personne_activite extract: layout, rejections,
idempotence, updates in place, inactivation — on SQLite and on PostgreSQL."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine

from adapter.directory import codes
from adapter.directory.importer import import_path
from adapter.directory.synthetic import header, write_national_extract
from adapter.errors import BadRequest
from adapter.store.db import engine_for, init_db
from adapter.store.directory_tables import DirectoryPractitioner, DirectoryRole
from adapter.store.engine import table_of
from tests.directory.conftest import NATIONAL_SAMPLE

practitioners = table_of(DirectoryPractitioner)
roles = table_of(DirectoryRole)


def test_layout_has_the_52_published_columns() -> None:
    columns = codes.national_layout()["columns"]
    assert len(columns) == 52
    assert columns[:4] == [
        "Type d'identifiant PP",
        "Identifiant PP",
        "Identification nationale PP",
        "Code civilité d'exercice",
    ]
    assert columns[-2:] == [
        "Code section tableau pharmaciens",
        "Libellé section tableau pharmaciens",
    ]
    assert header().endswith("|Libellé section tableau pharmaciens|")


def test_malformed_lines_are_rejected_one_by_one_and_the_rest_imported(engine: Engine) -> None:
    seen = []
    summary = import_path(engine, NATIONAL_SAMPLE, on_reject=seen.append)
    assert summary.kind == "national"
    assert (summary.read, summary.inserted, summary.rejected) == (10, 6, 4)
    assert [(r.line, r.reason.split(":")[0]) for r in seen] == [
        (5, "wrong column count"),
        (8, "bad identifier"),
        (10, "bad identifier"),
        (11, "bad encoding"),
    ]
    assert "40 columns, expected 52" in seen[0].reason
    assert summary.reasons == {"wrong column count": 1, "bad identifier": 2, "bad encoding": 1}
    with engine.connect() as connection:
        idnats = set(connection.execute(select(practitioners.c.idnat)).scalars())
    assert idnats == {"801234567897", "801234567896", "801984758437", "810003461033", "0751234567"}


def test_one_role_per_activity_and_the_identity_once(engine: Engine) -> None:
    import_path(engine, NATIONAL_SAMPLE)
    with engine.connect() as connection:
        david = connection.execute(
            select(roles).where(roles.c.practitioner_idnat == "801234567897").order_by(roles.c.id)
        ).all()
        person = connection.execute(
            select(practitioners).where(practitioners.c.idnat == "801234567897")
        ).one()
    assert [role.organization_name for role in david] == [
        "HOPITAL EUROPEEN GEORGES POMPIDOU",
        "CABINET DU DR DAVID",
    ]
    assert david[0].organization_idnat == "1750803447" and david[0].finess == "750803447"
    assert (person.family, person.given, person.prefix, person.rpps) == (
        "DAVID",
        "Charles",
        "Dr",
        "01234567897",
    )
    assert person.specialty_code == "SM27"
    assert person.specialty_system.endswith("TRE-R38-SpecialiteOrdinale")


def test_the_extract_is_read_from_inside_its_zip(engine: Engine, tmp_path: Path) -> None:
    archive = tmp_path / "PS_LibreAcces_202611270000.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("PS_LibreAcces_SavoirFaire_202611270000.txt", "not this one\n")
        bundle.write(NATIONAL_SAMPLE, NATIONAL_SAMPLE.name)
    summary = import_path(engine, archive)
    assert summary.source_name == NATIONAL_SAMPLE.name
    assert (summary.inserted, summary.rejected) == (6, 4)


def test_a_file_with_another_header_is_refused_whole(engine: Engine, tmp_path: Path) -> None:
    wrong = tmp_path / "PS_LibreAcces_Personne_activite_x.txt"
    columns = codes.national_layout()["columns"]
    wrong.write_text("|".join(columns[:30]) + "|\n8|1|81|\n", encoding="utf-8")
    with pytest.raises(BadRequest, match="expected 52 columns"):
        import_path(engine, wrong, kind="national")


def _import_twice_then_changed(engine: Engine, tmp_path: Path, lines: int) -> None:
    first_file, changed_file = tmp_path / "first.txt", tmp_path / "changed.txt"
    write_national_extract(first_file, lines, seed=7)
    changed = write_national_extract(changed_file, lines, seed=7, change_every=10)

    first = import_path(engine, first_file, kind="national")
    assert (first.inserted, first.updated, first.rejected) == (lines, 0, 0)

    again = import_path(engine, first_file, kind="national")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, lines)
    assert again.entities["practitioners"]["updated"] == 0

    with engine.connect() as connection:
        before = dict(connection.execute(select(roles.c.role_key, roles.c.phone)).all())
    update = import_path(engine, changed_file, kind="national")
    assert changed.changed_lines == lines // 10
    assert (update.inserted, update.updated, update.unchanged) == (
        0,
        lines // 10,
        lines - lines // 10,
    )
    with engine.connect() as connection:
        after = dict(connection.execute(select(roles.c.role_key, roles.c.phone)).all())
    differing = [key for key in after if after[key] != before[key]]
    assert len(differing) == lines // 10
    assert all(after[key].startswith("06") for key in differing)


def test_reimport_changes_nothing_and_a_tenth_changed_updates_exactly_those(
    engine: Engine, tmp_path: Path
) -> None:
    _import_twice_then_changed(engine, tmp_path, 3_000)


@pytest.mark.postgres
def test_the_same_importer_runs_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    engine = engine_for(postgres_url)
    init_db(engine)
    try:
        _import_twice_then_changed(engine, tmp_path, 2_000)
        summary = import_path(engine, NATIONAL_SAMPLE)
        assert (summary.inserted, summary.rejected) == (6, 4)
    finally:
        engine.dispose()


def test_professionals_absent_from_a_full_reimport_become_inactive_not_deleted(
    engine: Engine, tmp_path: Path
) -> None:
    full, shorter = tmp_path / "full.txt", tmp_path / "shorter.txt"
    write_national_extract(full, 2_000, seed=3)
    stats = write_national_extract(shorter, 2_000, seed=3, drop_professionals_every=20)
    import_path(engine, full, kind="national")
    summary = import_path(engine, shorter, kind="national")
    assert summary.deactivated == stats.dropped_professionals > 0
    with engine.connect() as connection:
        inactive = connection.execute(
            select(practitioners.c.idnat).where(practitioners.c.active.is_(False))
        ).all()
        total = connection.execute(select(practitioners.c.id)).all()
    assert len(inactive) == stats.dropped_professionals
    assert len(total) == stats.professionals + stats.dropped_professionals  # nothing deleted

    back = import_path(engine, full, kind="national")
    assert back.deactivated == 0
    with engine.connect() as connection:
        still_inactive = connection.execute(
            select(practitioners.c.idnat).where(practitioners.c.active.is_(False))
        ).all()
    assert still_inactive == []


def test_a_mostly_rejected_file_does_not_switch_the_directory_off(
    engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "good.txt"
    write_national_extract(good, 200, seed=5)
    import_path(engine, good, kind="national")
    broken = tmp_path / "broken.txt"
    lines = good.read_text(encoding="utf-8").splitlines()
    broken.write_text(
        "\n".join([lines[0], lines[1], *("8|x|" for _ in range(50))]) + "\n", encoding="utf-8"
    )
    summary = import_path(engine, broken, kind="national")
    assert summary.rejected == 50 and summary.deactivated == 0
    assert summary.notes == ["nothing marked inactive: more than half of the lines were rejected"]
    with engine.connect() as connection:
        inactive = connection.execute(
            select(practitioners.c.id).where(practitioners.c.active.is_(False))
        ).all()
    assert inactive == []


def test_a_partial_import_deactivates_nothing(engine: Engine, tmp_path: Path) -> None:
    full, shorter = tmp_path / "full.txt", tmp_path / "shorter.txt"
    write_national_extract(full, 500, seed=9)
    write_national_extract(shorter, 500, seed=9, drop_professionals_every=5)
    import_path(engine, full, kind="national")
    summary = import_path(engine, shorter, kind="national", full=False)
    assert summary.deactivated == 0


def _role_indexes(engine: Engine) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes("directory_role")}


def test_indexes_are_there_after_a_first_import_and_restored_after_a_crash(
    engine: Engine,
) -> None:
    expected = {"ix_dirrole_practitioner", "ix_dirrole_postcode", "ix_dirrole_specialty"}
    import_path(engine, NATIONAL_SAMPLE)  # first import: indexes built at the end
    assert expected <= _role_indexes(engine)
    with engine.begin() as connection:  # what a first import killed half-way leaves behind
        connection.exec_driver_sql("DROP INDEX ix_dirrole_practitioner")
    import_path(engine, NATIONAL_SAMPLE)
    assert expected <= _role_indexes(engine)


def test_crlf_line_ends_and_a_byte_order_mark_are_accepted(engine: Engine, tmp_path: Path) -> None:
    windows = tmp_path / "PS_LibreAcces_Personne_activite_crlf.txt"
    lines = NATIONAL_SAMPLE.read_bytes().split(b"\n")
    windows.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))
    summary = import_path(engine, windows)
    assert (summary.inserted, summary.rejected) == (6, 4)
