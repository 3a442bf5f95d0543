"""Dates on the coordinator's page as a person reads them in French, in Paris time."""

from __future__ import annotations

from datetime import date

from adapter.coordination.french_dates import french_birth, french_moment

TODAY = date(2026, 12, 4)


def test_moments_in_paris_time_with_the_year_only_when_not_this_one() -> None:
    assert french_moment("2019-12-03T13:30:00+01:00", today=TODAY) == \
        "mardi 3 décembre 2019, 13 h 30"
    assert french_moment("2026-12-01T08:05:00+00:00", today=TODAY) == "mardi 1er décembre, 9 h 05"
    assert french_moment("2026-07-14T22:30:00Z", today=TODAY) == "mercredi 15 juillet, 0 h 30"
    assert french_moment("2026-12-10", today=TODAY) == "jeudi 10 décembre"
    assert french_moment("", today=TODAY) == ""
    assert french_moment("bientôt", today=TODAY) == "bientôt"


def test_births() -> None:
    assert french_birth("1979-03-28") == "28 mars 1979"
    assert french_birth("1950-01-01") == "1er janvier 1950"
