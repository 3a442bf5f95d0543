"""Dates as a person reads them in French, in Paris time: "mardi 3 décembre 2019, 13 h 30"
(the year only when it is not this one), births as "28 mars 1979"."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")
PARIS = ZoneInfo("Europe/Paris")


def french_moment(value: object, *, today: date | None = None) -> str:
    """A FHIR date or dateTime; anything else is given back as it is."""
    text = str(value or "")
    if not text:
        return ""
    try:
        if len(text) <= 10:
            day, time = date.fromisoformat(text), ""
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(PARIS)
            day, time = moment.date(), f", {moment.hour} h {moment.minute:02d}"
    except ValueError:
        return text
    year = "" if day.year == (today or date.today()).year else f" {day.year}"
    return f"{WEEKDAYS[day.weekday()]} {_day(day)} {MONTHS[day.month - 1]}{year}{time}"


def french_birth(value: object) -> str:
    text = str(value or "")
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return text
    return f"{_day(day)} {MONTHS[day.month - 1]} {day.year}"


def _day(day: date) -> str:
    return "1er" if day.day == 1 else str(day.day)
