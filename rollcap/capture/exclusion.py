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
from rollcap.errors import ConfigError
from rollcap.journal import fields

log = logging.getLogger("rollcap.capture")


def effective_filters(cfg: RollcapConfig) -> dict[str, str]:
    """Each interface's effective filter (its own or capture.filter, and-ed with the
    exclusion, resolved once for all)."""
    clauses = _exclusion(cfg)
    return {
        name: combine_filter(cfg.capture.for_interface(name).filter, clauses)
        for name in cfg.capture.interfaces
    }


def filter_key(cfg: RollcapConfig, name: str) -> str:
    """The config key an interface's filter comes from, for error messages."""
    o = cfg.capture.per_interface.get(name)
    return (
        f"capture.per_interface.{name}.filter" if o and o.filter is not None else "capture.filter"
    )


def keyed(e: ConfigError, key: str) -> ConfigError:
    """A filter error of one interface, naming the key its filter comes from."""
    if key == "capture.filter":
        return e
    return ConfigError([p.replace("capture.filter:", f"{key}:", 1) for p in e.problems])


def _exclusion(cfg: RollcapConfig) -> list[str]:
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
    return clauses


def validate(cfg: RollcapConfig, effective: dict[str, str], timeout: float = 30) -> None:
    """ConfigError (exit 78) if tcpdump rejects an interface's filter; a device that
    cannot be opened now is checked again when it appears."""
    for name in cfg.capture.interfaces:
        with contextlib.suppress(DeviceUnavailable):
            try:
                check_filter(cfg.capture.for_interface(name), effective[name], timeout)
            except ConfigError as e:
                raise keyed(e, filter_key(cfg, name)) from None
