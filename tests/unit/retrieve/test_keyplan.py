"""Prefix planning and key parsing: list only what the window needs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE as T
from rollcap.keys import KeyFields as RenderFields
from rollcap.keys import render_key
from rollcap.retrieve.keyplan import (
    MAX_PLANNED_DAYS,
    KeyPattern,
    plan_prefixes,
    supports_host_discovery,
    window_days,
)

DAY = timedelta(days=1)


def test_window_looks_back_a_day_for_files_opened_before_since() -> None:
    since = datetime(2026, 11, 26, 0, 5, tzinfo=UTC)
    until = datetime(2026, 11, 26, 0, 10, tzinfo=UTC)
    assert window_days(since, until, DAY) == [date(2026, 11, 25), date(2026, 11, 26)]
    # until exactly at midnight does not drag in the next day
    assert window_days(since, datetime(2026, 11, 27, tzinfo=UTC), DAY)[-1] == date(2026, 11, 26)


def test_default_template_plans_one_prefix_per_host_and_day() -> None:
    days = [date(2026, 12, 31), date(2027, 1, 1)]
    assert plan_prefixes(T, "caps", "web1", days) == [
        "caps/web1/2026/12/31/web1-",
        "caps/web1/2027/01/01/web1-",
    ]
    assert plan_prefixes(T, "caps", "web1", days, iface="eth0") == [
        "caps/web1/2026/12/31/web1-eth0-",
        "caps/web1/2027/01/01/web1-eth0-",
    ]
    # file:// archives render {prefix} empty: keys start with the host
    assert plan_prefixes(T, "", "web1", days[:1]) == ["web1/2026/12/31/web1-"]


def test_planned_prefixes_hold_the_rendered_keys() -> None:
    start = datetime(2026, 11, 26, 23, 58, 1, tzinfo=UTC)
    key = render_key(T, RenderFields("caps/x", "db-2", "eth0", start, 7, ".pcap.zst"))
    (p,) = plan_prefixes(T, "caps/x", "db-2", [start.date()])
    assert key.startswith(p)


def test_custom_templates_plan_as_far_as_they_can() -> None:
    days = [date(2026, 11, 25), date(2026, 11, 26)]
    monthly = "{prefix}/{start:%Y-%m}/{host}/{seq}-{start:%H%M%S}{ext}"
    assert plan_prefixes(monthly, "p", "h", days) == ["p/2026-11/h/"]
    assert not supports_host_discovery(monthly)
    flat = "{prefix}/{seq:08d}-{host}-{start:%s}{ext}"
    assert plan_prefixes(flat, "p", "h", days) == ["p/"]
    assert supports_host_discovery(T)


def test_long_windows_list_the_host_once() -> None:
    days = [date(2020, 1, 1) + DAY * i for i in range(MAX_PLANNED_DAYS + 1)]
    assert plan_prefixes(T, "caps", "web1", days) == ["caps/web1/"]


def test_key_pattern_parses_default_keys() -> None:
    p = KeyPattern(T, "caps")
    f = p.parse("caps/web-1/2026/11/26/web-1-eth-0-20261126T235801Z-000042.pcap.zst")
    assert f is not None
    assert (f.host, f.iface) == ("web-1", "eth-0")
    assert f.start == datetime(2026, 11, 26, 23, 58, 1, tzinfo=UTC)
    assert f.precision == timedelta(seconds=1)
    assert p.parse("caps/web-1/2026/11/26/notes.txt") is None
    assert p.parse("other/web-1/2026/11/26/web-1-eth0-20261126T235801Z-000042.pcap") is None
    f2 = KeyPattern(T, "").parse("h/2026/11/26/h-any-20261126T000000Z-000001.pcap.gz")
    assert f2 is not None and f2.iface == "any"


def test_key_pattern_with_coarse_and_epoch_times() -> None:
    day = KeyPattern("{prefix}/{host}/{start:%Y%m%d}/{seq}{ext}", "p")
    f = day.parse("p/h/20261126/17.pcap")
    assert f is not None and f.start == datetime(2026, 11, 26, tzinfo=UTC)
    assert f.precision == timedelta(days=1)
    epoch = KeyPattern("{prefix}/{host}/{start:%s}-{seq}{ext}", "p").parse("p/h/1795694400-3.pcap")
    assert epoch is not None and epoch.start == datetime(2026, 11, 26, 12, tzinfo=UTC)
