"""Weekday windows and date ranges of forwarding rules (CONFIG.md, types 2 and 3).

Written forms::

    "mon-fri 08:00-18:00"            a weekday range and a time window
    "sat 10:00-14:00"                one day
    "mon,wed 09:00-12:00"            a list of days (ranges may be mixed in: "mon-wed,fri")
    "mon-fri 08:00-12:00,13:00-17:00" several windows on the same days
    "mon-sun 00:00-24:00"            every day, all day
    "fri 22:00-06:00"                crossing midnight: from Friday 22:00 to Saturday 06:00
    "fri-mon 08:00-18:00"            a day range may wrap around the week end

Day names are the first three letters of the English names, in any case.
Times are ``H:MM`` or ``HH:MM``; ``24:00`` only as the end of a window. A
window whose end is earlier than its start crosses midnight and belongs to
the day it *starts* on. A window that starts and ends at the same time is
an error (it would be empty, or the whole day: write 00:00-24:00).

Dates are ISO days ``2026-12-24`` or inclusive ranges ``2026-12-25..2026-12-26``.

All times are wall-clock times in the configured time zone.
"""

from __future__ import annotations

import datetime as dt
import re

from attrs import frozen

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_INDEX = {name: index for index, name in enumerate(DAY_NAMES)}
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_WINDOW = re.compile(r"([0-9]{1,2}:[0-9]{2})-([0-9]{1,2}:[0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

SCHEDULE_HINT = 'is not a weekday range with a time window like "mon-fri 08:00-18:00"'
DATES_HINT = 'is not a day like "2026-12-24" or a range like "2026-12-25..2026-12-26"'


class ScheduleError(ValueError):
    """A schedule or date entry that cannot be read; the message says why."""


@frozen(kw_only=True)
class Window:
    """Some weekdays and one time window on each of them.

    ``start`` and ``end`` are minutes after midnight. ``end <= start`` means
    the window crosses midnight into the next day.
    """

    text: str  # the entry as written, for messages and explain
    days: frozenset[int]  # 0 = Monday … 6 = Sunday
    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, weekday: int, minute: int) -> bool:
        """Whether the local wall-clock time (weekday, minute of day) is inside."""
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        if weekday in self.days and minute >= self.start:
            return True
        return (weekday - 1) % 7 in self.days and minute < self.end


@frozen(kw_only=True)
class DateRange:
    """An inclusive range of days (one day: ``first == last``)."""

    text: str
    first: dt.date
    last: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.first <= day <= self.last


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        for name in (first, last) if dash else (first,):
            if name.lower() not in _DAY_INDEX:
                raise ScheduleError(f'unknown day "{name}"; days are {", ".join(DAY_NAMES)}')
        start = _DAY_INDEX[first.lower()]
        stop = _DAY_INDEX[last.lower()] if dash else start
        day = start
        days.add(day)
        while day != stop:
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def _parse_time(text: str, *, end: bool) -> int:
    match = _TIME.fullmatch(text)
    if not match:
        raise ScheduleError(f'"{text}" is not a time like "08:00"')
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ScheduleError(f'"{text}" is not a time of day (00:00 to 23:59, 24:00 as an end)')
    return hours * 60 + minutes


def parse_schedule_entry(text: str) -> tuple[Window, ...]:
    """Read one ``schedule`` entry; raises ScheduleError naming the problem."""
    parts = text.split(None, 1)
    if len(parts) != 2:
        raise ScheduleError("expected days, a space and a time window")
    days = _parse_days(parts[0])
    windows = []
    for item in re.split(r"[,\s]+", parts[1].strip()):
        match = _WINDOW.fullmatch(item)
        if not match:
            raise ScheduleError(f'"{item}" is not a time window like "08:00-18:00"')
        start = _parse_time(match[1], end=False)
        end = _parse_time(match[2], end=True)
        if end == start:
            raise ScheduleError(f'"{item}" is empty (for a whole day write 00:00-24:00)')
        windows.append(Window(text=text, days=days, start=start, end=end))
    return tuple(windows)


def _parse_date(text: str) -> dt.date:
    if not _DATE.fullmatch(text):
        raise ScheduleError(f'"{text}" is not a date like "2026-12-24"')
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f'"{text}" is not a day of the calendar') from None


def parse_date_entry(text: str) -> DateRange:
    """Read one ``dates`` entry; raises ScheduleError naming the problem."""
    first_text, dots, last_text = text.strip().partition("..")
    first = _parse_date(first_text.strip())
    last = _parse_date(last_text.strip()) if dots else first
    if last < first:
        raise ScheduleError(f"the range is empty: {last} is before {first}")
    return DateRange(text=text, first=first, last=last)


def overlap(ranges: tuple[DateRange, ...]) -> tuple[DateRange, DateRange] | None:
    """Two ranges that share a day, or None."""
    ordered = sorted(ranges, key=lambda r: (r.first, r.last))
    for earlier, later in zip(ordered, ordered[1:]):
        if later.first <= earlier.last:
            return earlier, later
    return None


def in_windows(windows: tuple[Window, ...], local: dt.datetime) -> bool:
    """Whether the local wall-clock time falls into any of the windows."""
    weekday = local.weekday()
    minute = local.hour * 60 + local.minute
    return any(window.contains(weekday, minute) for window in windows)


def on_dates(ranges: tuple[DateRange, ...], day: dt.date) -> bool:
    return any(r.contains(day) for r in ranges)
