"""When to run: a fixed interval (``--every 15m``) or a cron expression (``--cron '*/15 * * * *'``).

Both answer one question, ``next_after(moment)``: the first tick strictly after ``moment``. A run
that overruns one or more ticks therefore never causes a burst of catch-up runs: the watcher
asks for the first tick after the run ended, and the missed ones are simply skipped.

Cron expressions follow Vixie cron (crontab(5)): five fields (minute, hour, day of month, month,
day of week), ``*``, lists, ranges, steps, month and day names, 0 or 7 for Sunday, and the
``@hourly``-style shortcuts. When both day fields are restricted, a day matches if either does
(as cron does); a field counts as unrestricted when it starts with ``*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from auditor.domain.errors import AuditorError

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ScheduleError(AuditorError, ValueError):
    """A duration or cron expression that cannot be used, with the reason."""


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``: a positive whole number of seconds."""
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit():
        seconds = int(compact)
    else:
        parts = _DURATION_PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact:
            raise ScheduleError(
                f"invalid duration {text!r}: use a number of seconds or parts like 30s, 15m, "
                "1h30m, 2d, 1w"
            )
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ScheduleError(f"invalid duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


class Schedule(Protocol):
    @property
    def immediate(self) -> bool:
        """Run once at start-up, before waiting for the first tick."""
        ...

    def next_after(self, moment: datetime) -> datetime: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class IntervalSchedule:
    """Ticks at ``anchor + k × every``; the watcher anchors it at its start and runs at once."""

    every: timedelta
    anchor: datetime
    immediate: bool = True

    def next_after(self, moment: datetime) -> datetime:
        if moment < self.anchor:
            return self.anchor
        elapsed = (moment - self.anchor) // self.every
        return self.anchor + (elapsed + 1) * self.every

    def describe(self) -> str:
        return f"every {format_duration(self.every)}"


# -- cron -------------------------------------------------------------------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: A leap day on a given weekday can be 28 years away; nothing valid is further.
_SEARCH_YEARS = 29


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_start: int = 0


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day of month", 1, 31),
    _FieldSpec("month", 1, 12, tuple(_MONTHS), 1),
    # 7 is accepted for Sunday and folded onto 0 after parsing.
    _FieldSpec("day of week", 0, 7, tuple(_DAYS), 0),
)


def _value(text: str, spec: _FieldSpec) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.names_start
    if not text.isdigit():
        raise ScheduleError(
            f"{spec.name}: {text!r} is not a number"
            + (f" or a name ({', '.join(spec.names)})" if spec.names else "")
        )
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise ScheduleError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_item(item: str, spec: _FieldSpec) -> set[int]:
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ScheduleError(f"{spec.name}: invalid step {step_text!r} in {item!r}")
        step = int(step_text)
    if base == "*":
        start, end = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        start, end = _value(first, spec), _value(last, spec)
        if start > end:
            raise ScheduleError(f"{spec.name}: range {base!r} runs backwards")
    else:
        start = _value(base, spec)
        # "5/10" means from 5 to the end in steps of 10 (as Vixie cron and cronie read it).
        end = spec.high if step_text else start
    return set(range(start, end + 1, step))


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    if not text:
        raise ScheduleError(f"{spec.name}: empty field")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{spec.name}: empty list item in {text!r}")
        values |= _parse_item(item, spec)
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A five-field cron expression, evaluated in ``tz`` (None: the system's local time)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  #: 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    tz: tzinfo | None = None
    immediate: bool = False

    def describe(self) -> str:
        return f"cron {self.expression!r}"

    def day_matches(self, day: datetime) -> bool:
        in_days = day.day in self.days
        # Python: Monday = 0; cron: Sunday = 0.
        in_weekdays = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock minute is a tick (seconds ignored)."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall)
        )

    def next_after(self, moment: datetime) -> datetime:
        wall = self._to_wall(moment)
        candidate = wall.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = candidate.year + _SEARCH_YEARS
        while candidate.year <= limit:
            # Skip whole months, days and hours that cannot match before looking at minutes,
            # so that a search costs at most a few thousand steps.
            if candidate.month not in self.months:
                candidate = _first_of_next_month(candidate)
            elif not self.day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0) + timedelta(days=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate += timedelta(minutes=1)
            else:
                return self._from_wall(candidate)
        raise ScheduleError(f"cron expression {self.expression!r} never matches")

    def _to_wall(self, moment: datetime) -> datetime:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        local = aware.astimezone(self.tz) if self.tz is not None else aware.astimezone()
        return local.replace(tzinfo=None)

    def _from_wall(self, wall: datetime) -> datetime:
        if self.tz is not None:
            return wall.replace(tzinfo=self.tz)
        # A naive datetime's astimezone() reads it as the system's local time (DST included).
        return wall.astimezone()


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=1, hour=0, minute=0)


def parse_cron(expression: str, tz: tzinfo | None = None) -> CronSchedule:
    """Parse and check a cron expression; an expression that can never fire is refused."""
    text = _SHORTCUTS.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(
            f"cron expression {expression!r}: expected 5 fields (minute hour day-of-month "
            f"month day-of-week), got {len(fields)}"
        )
    try:
        minutes, hours, days, months, weekdays = (
            _parse_field(f, spec) for f, spec in zip(fields, _FIELDS, strict=True)
        )
    except ScheduleError as exc:
        raise ScheduleError(f"cron expression {expression!r}: {exc}") from exc
    schedule = CronSchedule(
        expression=expression.strip(),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(d % 7 for d in weekdays),
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
        tz=tz,
    )
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # refuses "0 0 31 2 *" now, not later
    return schedule
