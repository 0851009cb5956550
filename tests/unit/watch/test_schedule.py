"""Durations and cron expressions: parsing, and the next tick compared with a minute-by-minute
search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.watch.schedule import (
    IntervalSchedule,
    ScheduleError,
    format_duration,
    parse_cron,
    parse_duration,
)

T = datetime(2025, 3, 14, 10, 17, 42, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1H 5M", 3900),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "5x", "m5", "1.5h", "5m3", "h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_duration(text)


def test_duration_round_trip() -> None:
    assert format_duration(parse_duration("1d2h3m4s")) == "1d2h3m4s"
    assert parse_duration(format_duration(timedelta(seconds=86399))) == timedelta(seconds=86399)


def test_interval_ticks_stay_on_the_grid_and_skip_overrun_ticks() -> None:
    schedule = IntervalSchedule(timedelta(minutes=10), anchor=T)
    assert schedule.next_after(T - timedelta(hours=1)) == T
    assert schedule.next_after(T) == T + timedelta(minutes=10)
    assert schedule.next_after(T + timedelta(minutes=9, seconds=59)) == T + timedelta(minutes=10)
    # A run that ended 35 minutes in: the ticks at 10, 20 and 30 are gone, the next is at 40.
    assert schedule.next_after(T + timedelta(minutes=35)) == T + timedelta(minutes=40)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", T, datetime(2025, 3, 14, 10, 30, tzinfo=UTC)),
        ("0 * * * *", T, datetime(2025, 3, 14, 11, 0, tzinfo=UTC)),
        ("@hourly", T, datetime(2025, 3, 14, 11, 0, tzinfo=UTC)),
        ("@daily", T, datetime(2025, 3, 15, 0, 0, tzinfo=UTC)),
        ("30 2 * * mon-fri", T, datetime(2025, 3, 17, 2, 30, tzinfo=UTC)),
        ("0 0 1 jan *", T, datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
        ("0 12 * * 7", T, datetime(2025, 3, 16, 12, 0, tzinfo=UTC)),  # 7 is Sunday
        ("0 12 * * 0", T, datetime(2025, 3, 16, 12, 0, tzinfo=UTC)),
        ("5/20 10 * * *", T, datetime(2025, 3, 14, 10, 25, tzinfo=UTC)),
        ("0 0 29 2 *", T, datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
        # Both day fields restricted: either matches (the 20th, or any Monday).
        ("0 0 20 * mon", T, datetime(2025, 3, 17, 0, 0, tzinfo=UTC)),
        # Day of week unrestricted by a leading '*': only the 20th.
        ("0 0 20 * */1", T, datetime(2025, 3, 20, 0, 0, tzinfo=UTC)),
        ("17 10 * * *", T, datetime(2025, 3, 15, 10, 17, tzinfo=UTC)),  # strictly after
    ],
)
def test_cron_next_tick(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expression, tz=UTC).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * foo *", "not a number"),
        ("*/0 * * * *", "invalid step"),
        ("10-5 * * * *", "runs backwards"),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 31 2 *", "never matches"),
    ],
)
def test_bad_cron_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_cron(expression, tz=UTC)


def test_cron_in_a_time_zone_with_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    schedule = parse_cron("30 2 * * *", tz=berlin)
    # 2025-03-30 02:30 does not exist in Berlin (clocks jump from 02:00 to 03:00): the tick
    # falls at 03:30 CEST (01:30 UTC), once, and the next one is the ordinary 02:30 CEST.
    tick = schedule.next_after(datetime(2025, 3, 30, 0, 0, tzinfo=berlin))
    assert tick.astimezone(UTC) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    following = schedule.next_after(tick)
    assert following.astimezone(UTC) == datetime(2025, 3, 31, 0, 30, tzinfo=UTC)
    # In winter the same expression is 01:30 UTC.
    winter = schedule.next_after(datetime(2025, 1, 10, 12, 0, tzinfo=berlin))
    assert winter.astimezone(UTC) == datetime(2025, 1, 11, 1, 30, tzinfo=UTC)


def _brute_force(schedule_expr: str, after: datetime) -> datetime:
    schedule = parse_cron(schedule_expr, tz=UTC)
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(60 * 24 * 40):
        if schedule.matches(moment.replace(tzinfo=None)):
            return moment
        moment += timedelta(minutes=1)
    raise AssertionError("no tick within 40 days")


_minute = st.sampled_from(["*", "*/7", "0", "5,35", "10-20/5", "59"])
_hour = st.sampled_from(["*", "*/5", "3", "0-6", "22,23"])
_day = st.sampled_from(["*", "1", "1-10", "15,28", "*/3"])
_weekday = st.sampled_from(["*", "1", "sat,sun", "2-4", "5"])


@settings(max_examples=60, deadline=None)
@given(
    minute=_minute,
    hour=_hour,
    day=_day,
    weekday=_weekday,
    offset=st.integers(min_value=0, max_value=60 * 24 * 366),
)
def test_next_tick_equals_the_first_matching_minute(
    minute: str, hour: str, day: str, weekday: str, offset: int
) -> None:
    expression = f"{minute} {hour} {day} * {weekday}"
    after = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=offset, seconds=13)
    assert parse_cron(expression, tz=UTC).next_after(after) == _brute_force(expression, after)
