"""parse_retry_after: RFC 9110 §10.2.3 delta-seconds or HTTP date; None when absent or garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from warroom.retry import parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "NaN", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_absent_or_unparseable_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None and 80 <= seconds <= 90


def test_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_http_date_without_zone_is_utc() -> None:
    when = datetime.now(UTC) + timedelta(seconds=60)
    seconds = parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S -0000"))
    assert seconds is not None and 50 <= seconds <= 60
