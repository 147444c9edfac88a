"""The monitoring window (``--since`` or ``--start``/``--end``) and ``parse_duration``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mlops.errors import ConfigError
from mlops.monitoring.window import Window, resolve_window
from mlops.settings import Settings
from mlops.types import parse_duration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_since_counts_back_from_now() -> None:
    window = resolve_window(since="15m", now=NOW)
    assert window == Window(NOW - timedelta(minutes=15), NOW)


def test_since_counts_back_from_end() -> None:
    window = resolve_window(since="2h", end="2026-11-29T08:30:00Z", now=NOW)
    assert window.start == datetime(2026, 11, 29, 6, 30, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 29, 8, 30, tzinfo=UTC)


def test_start_and_end() -> None:
    window = resolve_window(start="2026-11-30T09:00:00Z", end="2026-11-30T10:15:00Z", now=NOW)
    assert window == Window(
        datetime(2026, 11, 30, 9, 0, tzinfo=UTC), datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
    )


def test_start_alone_runs_to_now() -> None:
    assert resolve_window(start="2026-11-30T11:00", now=NOW).end == NOW


def test_default_window_applies_without_since_or_start() -> None:
    assert resolve_window(now=NOW) == Window(NOW - timedelta(hours=1), NOW)
    assert resolve_window(default="1d", now=NOW).start == NOW - timedelta(days=1)
    # since wins over the default
    assert resolve_window(since="90s", default="1d", now=NOW).start == NOW - timedelta(seconds=90)


def test_without_now_the_window_ends_at_the_clock() -> None:
    before = datetime.now(UTC)
    window = resolve_window(since="1h")
    after = datetime.now(UTC)
    assert before <= window.end <= after
    assert window.end - window.start == timedelta(hours=1)


def test_naive_times_are_utc() -> None:
    window = resolve_window(start="2026-11-30T09:00:00", end="2026-11-30T10:00:00", now=NOW)
    assert window.start == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert window.start.tzinfo == UTC and window.end.tzinfo == UTC


def test_naive_datetime_objects_are_utc() -> None:
    window = resolve_window(start=datetime(2026, 11, 30, 9), end=datetime(2026, 11, 30, 10))
    assert window == Window(
        datetime(2026, 11, 30, 9, tzinfo=UTC), datetime(2026, 11, 30, 10, tzinfo=UTC)
    )


def test_z_suffix_and_offsets_are_converted_to_utc() -> None:
    z = resolve_window(start="2026-11-30T09:00:00Z", end="2026-11-30T10:00:00Z")
    offset = resolve_window(start="2026-11-30T11:00:00+02:00", end="2026-11-30T05:00:00-05:00")
    aware = resolve_window(
        start=datetime(2026, 11, 30, 10, 0, tzinfo=timezone(timedelta(hours=1))),
        end="2026-11-30T10:00:00.000Z",
    )
    assert z == offset == aware
    assert offset.start.tzinfo == UTC and offset.start.hour == 9


def test_since_and_start_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"either --since or --start/--end, not both"):
        resolve_window(since="1h", start="2026-11-30T09:00:00Z", now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"start": "yesterday"}, "--start 'yesterday'"),
        ({"start": "2026-11-30T09:00:00Z", "end": "30/11/2026 10:00"}, "--end '30/11/2026 10:00'"),
        ({"end": "2026-13-01T00:00:00"}, "--end '2026-13-01T00:00:00'"),
    ],
)
def test_unreadable_time_names_the_input_and_the_fix(kwargs: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_window(**kwargs, now=NOW)
    message = str(caught.value)
    assert named in message
    assert "is not an ISO-8601 time" in message
    assert "write e.g. 2026-11-30T10:00:00Z" in message


@pytest.mark.parametrize("since", ["soon", "1 hour", "-1h", "1y", ""])
def test_unreadable_since_names_the_input_and_the_forms(since: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_window(since=since, now=NOW)
    message = str(caught.value)
    assert f"--since {since!r}" in message
    assert "90s, 15m, 1h, 2d or 1w" in message


def test_a_bad_default_is_reported_too() -> None:
    with pytest.raises(ConfigError, match="'hourly' is not a duration"):
        resolve_window(default="hourly", now=NOW)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": "2026-11-30T10:00:00Z", "end": "2026-11-30T10:00:00Z"},  # start == end
        {"start": "2026-11-30T11:00:00Z", "end": "2026-11-30T10:00:00Z"},  # start after end
        {"start": "2026-11-30T12:30:00Z"},  # start after now
        {"since": "0s"},
        {"since": "0"},
    ],
)
def test_empty_window_is_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="is empty; the start must come before the end"):
        resolve_window(**kwargs, now=NOW)


def test_a_since_reaching_before_year_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--since '1000000d'"):
        resolve_window(since="1000000d", now=NOW)


def test_label_and_to_dict() -> None:
    window = resolve_window(start="2026-11-30T10:00:00Z", end="2026-11-30T11:05:59Z")
    assert window.label() == "2026-11-30T10:00Z..2026-11-30T11:05Z"
    assert window.to_dict() == {
        "start": "2026-11-30T10:00:00+00:00",
        "end": "2026-11-30T11:05:59+00:00",
    }


def test_label_is_utc_for_offset_input() -> None:
    window = resolve_window(start="2026-11-30T12:00:00+02:00", end="2026-11-30T13:30:00+02:00")
    assert window.label() == "2026-11-30T10:00Z..2026-11-30T11:30Z"


# parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("10sec", timedelta(seconds=10)),
        ("3min", timedelta(minutes=3)),
        ("1.5h", timedelta(minutes=90)),
        (" 2 H ", timedelta(hours=2)),
        ("45", timedelta(seconds=45)),
        ("0", timedelta(0)),
        (45, timedelta(seconds=45)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(minutes=7), timedelta(minutes=7)),
    ],
)
def test_parse_duration_forms(text: str | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1y", "1 hour", "1e3", "1h30m", "-5m", "soon", True])
def test_parse_duration_refuses_other_text(text: object) -> None:
    with pytest.raises(ValueError, match="is not a duration; write a number with a unit") as caught:
        parse_duration(text, "monitoring.window")  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"monitoring.window {text!r}")
    assert "90s, 15m, 1h, 2d or 1w" in str(caught.value)


def test_parse_duration_refuses_negative_numbers() -> None:
    with pytest.raises(ValueError, match=r"retraining.cooldown -5 is negative; give a positive"):
        parse_duration(-5, "retraining.cooldown")


@pytest.mark.parametrize("value", [math.nan, math.inf, "100000000000w", 1e300])
def test_parse_duration_refuses_what_no_timedelta_holds(value: object) -> None:
    with pytest.raises(ValueError, match="cooldown") as caught:
        parse_duration(value, "cooldown")  # type: ignore[arg-type]
    assert "1h" in str(caught.value)  # says what to write instead


def test_settings_report_an_absurd_window_as_a_validation_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="monitoring.window '100000000000w'"):
        Settings(monitoring={"window": "100000000000w"})
