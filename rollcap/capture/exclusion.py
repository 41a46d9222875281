"""The effective tcpdump filter: the user's filter and-ed with clauses that
exclude the offload service's own connections to an S3 endpoint."""

from __future__ import annotations

import contextlib
import logging

from rollcap.capture.command import (
    DeviceUnavailable,
    IPAddress,
    check_filter,
    combine_filter,
    exclusion_clauses,
    offload_endpoints,
    resolve,
)
from rollcap.config.schema import RollcapConfig
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")


def effective_filter(cfg: RollcapConfig) -> str:
    clauses: list[str] = []
    if cfg.offload.is_s3 and cfg.capture.exclude_offload_traffic:
        pairs: list[tuple[IPAddress, int]] = []
        for ep in offload_endpoints(cfg.offload):
            ips = resolve(ep.host)
            if not ips:
                log.warning(
                    "cannot resolve offload endpoint %s; its traffic is not excluded "
                    "(rollcap-capture.service: is the DNS server in its IPAddressAllow=?)",
                    ep.host,
                    extra=fields(host=ep.host),
                )
            pairs += [(ip, ep.port) for ip in ips]
        clauses = exclusion_clauses(pairs)
        if clauses:
            log.info(
                "excluding the offload service's own traffic: %s",
                " and ".join(clauses),
                extra=fields(exclusion=" and ".join(clauses)),
            )
    elif cfg.offload.is_s3:
        log.info("capture.exclude_offload_traffic is off: uploads may be captured too")
    return combine_filter(cfg.capture.filter, clauses)


def validate(cfg: RollcapConfig, effective: str, timeout: float = 30) -> None:
    """ConfigError (exit 78) if tcpdump rejects the filter; a device that cannot
    be opened now is checked again when it appears."""
    with contextlib.suppress(DeviceUnavailable):
        check_filter(cfg.capture, effective, timeout)
