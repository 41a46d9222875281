"""Small helpers to build metric families from state-dict values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def number(state: Mapping[str, Any], key: str) -> float | None:
    """state[key] if it is a number (bools are not), else None."""
    v = state.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def counter(
    name: str, doc: str, value: float | None, labels: Mapping[str, str] | None = None
) -> CounterMetricFamily:
    """A counter family; name without _total (prometheus_client adds it)."""
    labels = labels or {}
    fam = CounterMetricFamily(name, doc, labels=list(labels))
    if value is not None:
        fam.add_metric(list(labels.values()), value)
    return fam


def gauge(
    name: str, doc: str, value: float | None, labels: Mapping[str, str] | None = None
) -> GaugeMetricFamily:
    labels = labels or {}
    fam = GaugeMetricFamily(name, doc, labels=list(labels))
    if value is not None:
        fam.add_metric(list(labels.values()), value)
    return fam
