"""Prometheus metrics for both daemons (see docs/metrics.md).

Each daemon hands the state dict it already writes for `rollcap status` to an
Exporter (rollcap.metrics.exporter); collectors turn the latest dict into
metric families at collection time, so a counter is exactly the number
`rollcap status` shows. The exporter rewrites a node_exporter textfile
(rollcap.metrics.textfile) every interval and at exit, and optionally serves
/metrics over HTTP (rollcap.metrics.http).
"""
