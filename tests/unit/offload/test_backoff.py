"""Backoff, key ownership for cleanup, compression slots, existing objects."""

from __future__ import annotations

import random

from rollcap.config.schema import DEFAULT_KEY_TEMPLATE
from rollcap.offload.backoff import Backoff
from rollcap.offload.destination import host_key_matcher


def test_backoff_grows_jittered_and_capped() -> None:
    random.seed(1)
    b = Backoff(cap=300)
    delays = [b.next_delay() for _ in range(20)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4 <= delays[3] <= 8
    assert all(d <= 300 for d in delays) and delays[-1] >= 150
    assert len({round(d, 6) for d in delays[-5:]}) == 5  # jittered, not in lockstep
    b.reset()
    assert b.next_delay() <= 1.0


def test_host_key_matcher_only_matches_this_hosts_keys() -> None:
    ours = host_key_matcher(DEFAULT_KEY_TEMPLATE, "caps", {"web1"})
    assert ours("caps/web1/2026/11/26/web1-eth0-20261126T120000Z-000001.pcap.zst")
    assert not ours("caps/web10/2026/11/26/web10-eth0-20261126T120000Z-000001.pcap.zst")
    assert not ours("caps/db1/2026/11/26/db1-eth0-20261126T120000Z-000001.pcap.zst")
    assert not ours("other/web1/2026/11/26/web1-eth0-20261126T120000Z-000001.pcap.zst")
    local = host_key_matcher(DEFAULT_KEY_TEMPLATE, "", {"web1", "web2"})
    assert local("web2/2026/11/26/web2-eth0-20261126T120000Z-000001.pcap.zst")
    assert not local("db/2026/11/26/db-eth0-20261126T120000Z-000001.pcap.zst")


def test_compression_slots_go_oldest_first_whoever_starts_first() -> None:
    import threading
    import time

    from rollcap.offload.pipeline import OrderedSlots

    slots = OrderedSlots(1, threading.Event())
    order: list[str] = []
    for key in ("a", "b", "c"):
        slots.reserve(key)  # queued in this order by the main loop

    def work(key: str) -> None:
        with slots.slot(key):
            order.append(key)
            time.sleep(0.05)

    # the youngest thread starts first; "b" never needs its slot
    threads = [threading.Thread(target=work, args=(k,)) for k in ("c", "a")]
    for t in threads:
        t.start()
        time.sleep(0.05)
    slots.release_reservation("b")
    for t in threads:
        t.join(10)
    assert order == ["a", "c"]


def test_an_existing_object_is_the_same_pcap_only_if_crc_size_and_packets_agree() -> None:

    from rollcap.offload.compress import Compressed
    from rollcap.offload.existing import same_pcap
    from rollcap.storage import META

    c = Compressed(10, "ab" * 32, 1000, "0badf00d", 7, None, None, 1)
    meta = {META["pcap_crc32"]: "0badf00d", META["pcap_bytes"]: "1000", META["packets"]: "7"}
    assert same_pcap(meta, c)
    assert not same_pcap({**meta, META["pcap_crc32"]: "0badf00e"}, c)
    assert not same_pcap({**meta, META["pcap_bytes"]: "1001"}, c)
    assert not same_pcap({**meta, META["packets"]: "8"}, c)
    assert not same_pcap({}, c)  # an object without our metadata
