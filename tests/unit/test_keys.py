"""Object key templates: keys are unique, sortable, and never leave the prefix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.errors import ConfigError
from rollcap.keys import KeyFields, check_key, render_key, validate_template

START = datetime(2026, 11, 26, 13, 5, 1, tzinfo=UTC)


def fields(**kw: object) -> KeyFields:
    base: dict[str, object] = {
        "prefix": "caps",
        "host": "web1",
        "iface": "eth0",
        "start": START,
        "seq": 42,
        "ext": ".pcap.zst",
    }
    return KeyFields(**{**base, **kw})  # type: ignore[arg-type]


def test_default_template() -> None:
    validate_template(DEFAULT_KEY_TEMPLATE)
    assert render_key(DEFAULT_KEY_TEMPLATE, fields()) == (
        "caps/web1/2026/11/26/web1-eth0-20261126T130501Z-000042.pcap.zst"
    )


def test_empty_prefix_is_the_bucket_root() -> None:
    assert render_key(DEFAULT_KEY_TEMPLATE, fields(prefix="")).startswith("web1/2026/")


def test_nested_prefix() -> None:
    key = render_key(DEFAULT_KEY_TEMPLATE, fields(prefix="a/b/c"))
    assert key.startswith("a/b/c/web1/")


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{host}/{start:%Y}/{seq}", 'must start with "{prefix}/"'),
        ("/{prefix}/{host}/{start:%Y}/{seq}", 'must start with "{prefix}/"'),
        ("{prefix}{host}/{start:%Y}/{seq}", 'must start with "{prefix}/"'),
        ("{prefix}/../{host}/{start:%Y}/{seq}", "'..' path segment"),
        ("{prefix}/./{host}/{start:%Y}/{seq}", "'.' or '..' path segment"),
        ("{prefix}//{host}/{start:%Y}/{seq}", "empty"),
        ("{prefix}/{host}/{start:%Y}/{seq}/", "empty"),
        ("{prefix}/{host}/{start:%Y}\n/{seq}", "characters outside"),
        ("{prefix}/{host}/{start:%Y}\x00{seq}", "characters outside"),
        ("{prefix}/{host} {start:%Y}/{seq}", "characters outside"),
        ("{prefix}/{hots}/{start:%Y}/{seq}", "unknown placeholder {hots}"),
        ("{prefix}/{host.__class__}/{start}/{seq}", "unknown placeholder"),
        ("{prefix}/{host}/{start}/{seq[0]}", "unknown placeholder"),
        ("{prefix}/{host!r}/{start:%Y}/{seq}", "takes no !conversion"),
        ("{prefix}/{host}/{start:%Y}/{seq:%Y}", "cannot be rendered"),
        ("{prefix}/{host}/{start:%Y%%}/{seq}", "characters outside"),
        ("{prefix}/{host}/{seq}", "must contain {start}"),
        ("{prefix}/{start:%Y}/{iface}", "must contain {host} and {seq}"),
        ("{prefix}/{host", "not a valid template"),
        ("{prefix}/{0}/{host}/{start}/{seq}", "unknown placeholder {0}"),
        ("{prefix}/{}/{host}/{start}/{seq}", "unknown placeholder {}"),
    ],
)
def test_bad_templates(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=__import__("re").escape(why)):
        validate_template(template)


@pytest.mark.parametrize(
    ("host", "iface"),
    [
        ("..", "eth0"),
        ("../../etc", "eth0"),
        ("web1/../../x", "eth0"),
        ("web1", "eth0/../.."),
        ("web\n1", "eth0"),
        ("web\x001", "eth0"),
        ("web 1", "eth0"),
        ("", "eth0"),  # would leave an empty path segment
        ("web1%2F..", "eth0"),
    ],
)
def test_hostile_host_or_interface_is_refused_at_render(host: str, iface: str) -> None:
    with pytest.raises(ConfigError, match=r"^offload\.key_template: key "):
        render_key(DEFAULT_KEY_TEMPLATE, fields(host=host, iface=iface))


def test_check_key_demands_the_prefix() -> None:
    assert check_key("caps/x/y", "caps") == "caps/x/y"
    assert check_key("caps/x/y", "caps/") == "caps/x/y"
    with pytest.raises(ValueError, match="not below the prefix"):
        check_key("capsule/x", "caps")
    with pytest.raises(ValueError, match="not below the prefix"):
        check_key("caps", "caps")


def test_keys_sort_in_time_order_within_a_host() -> None:
    keys = [
        render_key(DEFAULT_KEY_TEMPLATE, fields(start=START.replace(month=m, day=d), seq=s))
        for s, (m, d) in enumerate([(1, 1), (1, 31), (2, 1), (10, 5), (12, 31)])
    ]
    assert sorted(keys) == keys


def test_precision_on_names_and_overlong_segments_are_refused() -> None:
    import pytest as _pytest

    from rollcap.keys import check_key, validate_template

    for bad in ("{prefix:.2}/{host}/{start:%Y}/{seq}", "{prefix}/{host:.3}/{start:%Y}-{seq}",
                "{prefix}/{host}/{iface:.1}-{start:%Y}-{seq}"):  # fmt: skip
        with _pytest.raises(ValueError, match="takes no precision"):
            validate_template(bad)
    validate_template("{prefix}/{host}/{start:%Y}/{seq:010d}")  # widths stay allowed
    with _pytest.raises(ValueError, match="over 255"):
        check_key("p/" + "a" * 256 + "/x", "p")
