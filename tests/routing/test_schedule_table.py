"""Weekday windows, date ranges and caller filters, as tables."""

from __future__ import annotations

import datetime as dt

import pytest

from sipfork.routing.callers import caller_matches, normalise_caller, parse_caller_pattern
from sipfork.routing.schedule import (
    ScheduleError,
    in_windows,
    on_dates,
    overlap,
    parse_date_entry,
    parse_schedule_entry,
)

# 2026-03-02 is a Monday.
MON = dt.date(2026, 3, 2)


def at(day_offset: int, hhmm: str) -> dt.datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return dt.datetime.combine(MON + dt.timedelta(days=day_offset), dt.time(hours, minutes))


WINDOWS = [
    # entry, (day offset from Monday, time), inside?
    ("mon-fri 08:00-18:00", (0, "08:00"), True),
    ("mon-fri 08:00-18:00", (0, "07:59"), False),
    ("mon-fri 08:00-18:00", (0, "17:59"), True),
    ("mon-fri 08:00-18:00", (0, "18:00"), False),  # the end is not inside
    ("mon-fri 08:00-18:00", (4, "12:00"), True),
    ("mon-fri 08:00-18:00", (5, "12:00"), False),
    ("sat 10:00-14:00", (5, "10:30"), True),
    ("sat 10:00-14:00", (6, "10:30"), False),
    ("Mon,Wed 09:00-12:00", (2, "09:00"), True),
    ("mon,wed 09:00-12:00", (1, "09:00"), False),
    ("mon-wed,fri 09:00-12:00", (4, "11:59"), True),
    ("mon-wed,fri 09:00-12:00", (3, "11:59"), False),
    ("mon-sun 00:00-24:00", (6, "23:59"), True),
    ("mon-sun 00:00-24:00", (3, "00:00"), True),
    ("mon-fri 8:00-12:00,13:00-17:00", (0, "12:30"), False),
    ("mon-fri 8:00-12:00,13:00-17:00", (0, "13:30"), True),
    ("mon-fri 08:00-12:00 13:00-17:00", (0, "08:00"), True),
    # crossing midnight belongs to the day it starts on
    ("fri 22:00-06:00", (4, "23:00"), True),
    ("fri 22:00-06:00", (5, "05:59"), True),
    ("fri 22:00-06:00", (5, "06:00"), False),
    ("fri 22:00-06:00", (4, "05:00"), False),
    ("fri 22:00-06:00", (5, "23:00"), False),
    ("sun 22:00-06:00", (7, "01:00"), True),  # into next Monday
    # a day range may wrap around the week end
    ("fri-mon 08:00-18:00", (6, "09:00"), True),
    ("fri-mon 08:00-18:00", (7, "09:00"), True),
    ("fri-mon 08:00-18:00", (1, "09:00"), False),
]


@pytest.mark.parametrize(("entry", "when", "inside"), WINDOWS)
def test_windows(entry: str, when: tuple[int, str], inside: bool) -> None:
    assert in_windows(parse_schedule_entry(entry), at(*when)) is inside


@pytest.mark.parametrize(
    "entry",
    ["mon-fry 8-18", "mon-fri", "mon-fri 8-18", "08:00-18:00", "mon-fri 08:00-08:00", "mon-fri 18:60-19:00",
     "mon-fri 24:00-06:00", "mon-fri 08:00-24:01", "mon-fri 08:00_18:00", "weekdays 08:00-18:00", "mon- 08:00-09:00"],
)
def test_bad_windows(entry: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule_entry(entry)


DATES = [
    ("2026-12-24", dt.date(2026, 12, 24), True),
    ("2026-12-24", dt.date(2026, 12, 25), False),
    ("2026-12-25..2026-12-26", dt.date(2026, 12, 25), True),
    ("2026-12-25..2026-12-26", dt.date(2026, 12, 26), True),
    ("2026-12-25..2026-12-26", dt.date(2026, 12, 27), False),
    ("2026-12-31..2027-01-01", dt.date(2027, 1, 1), True),
    ("2026-12-24..2026-12-24", dt.date(2026, 12, 24), True),
]


@pytest.mark.parametrize(("entry", "day", "inside"), DATES)
def test_dates(entry: str, day: dt.date, inside: bool) -> None:
    assert on_dates((parse_date_entry(entry),), day) is inside


@pytest.mark.parametrize("entry", ["2026-12-26..2026-12-25", "2026-13-01", "2026-02-29", "24.12.2026", "2026-12-24..", "xmas"])
def test_bad_dates(entry: str) -> None:
    with pytest.raises(ScheduleError):
        parse_date_entry(entry)


def test_overlap() -> None:
    ranges = tuple(parse_date_entry(e) for e in ("2026-12-24", "2026-12-26..2026-12-28", "2026-12-31"))
    assert overlap(ranges) is None
    clash = tuple(parse_date_entry(e) for e in ("2026-12-28..2026-12-31", "2026-12-24", "2026-12-26..2026-12-28"))
    assert overlap(clash) is not None


CALLERS = [
    # filter, caller, matches?
    (["anonymous"], None, True),
    (["anonymous"], "anonymous", True),  # RFC 3323 From user part
    (["anonymous"], "Anonymous", True),
    (["anonymous"], "", True),
    (["anonymous"], "+491701234567", False),
    (["+49170*"], "+491701234567", True),
    (["+49170*"], "+49 170 1234567", True),  # visual separators are ignored
    (["+49170*"], "tel:+491701234567", True),
    (["+49170*"], "01701234567", False),  # no national/international normalisation
    (["+49170*"], None, False),
    (["+491701234567"], "+491701234567", True),
    (["+491701234567"], "+4917012345678", False),
    (["*"], "+4930", True),
    (["*"], None, False),
    (["alice"], "alice", True),
    (["alice"], "bob", False),
    (["+49 170-*", "0170*"], "01701234567", True),
    ([], None, True),  # no filter: everybody
]


@pytest.mark.parametrize(("patterns", "caller", "matches"), CALLERS)
def test_caller_filter(patterns: list[str], caller: str | None, matches: bool) -> None:
    compiled = tuple(parse_caller_pattern(p, frozenset({"alice", "bob"})) for p in patterns)
    assert caller_matches(compiled, normalise_caller(caller)) is matches
