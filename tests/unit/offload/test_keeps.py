"""The offload's release of a done keep: a failure it does not expect is logged
with its traceback and the keep is tried again, never stuck in _releasing."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rollcap.config.load import validate_data
from rollcap.keep.request import KeepRequest
from rollcap.metrics.exporter import offload_exporter
from rollcap.offload import keeps
from rollcap.storage import open_storage

S = 1_000_000_000


def test_a_release_that_raises_is_logged_and_the_keep_is_free_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = validate_data({
        "spool": {"directory": str(tmp_path / "spool")},
        "offload": {"destination": f"file://{tmp_path}/archive", "concurrency": 1},
    })  # fmt: skip
    executor = ThreadPoolExecutor(1)
    storage = open_storage(cfg.offload)
    ks = keeps.Keeps(cfg, storage, executor, threading.Event(), offload_exporter(cfg))
    k = KeepRequest(id="k1", reason="r", since_ns=S, until_ns=2 * S, created_ns=S, source="cli")

    def bug(*_a: object) -> str:
        raise KeyError("a bug")

    monkeypatch.setattr(keeps, "write_record", bug)
    monkeypatch.setattr(storage, "manifests", True, raising=False)
    monkeypatch.setattr(ks.shipping, "refresh", lambda: False)
    monkeypatch.setattr(ks.shipping, "keeps", [k])
    monkeypatch.setattr(ks.shipping, "done", lambda _in_flight: [k])
    with caplog.at_level(logging.ERROR, "rollcap.offload"):
        assert not ks.refresh()  # the offload loop's look at the keeps
        ks.release_done((), may_write=True)
        deadline = time.monotonic() + 10
        while k.id in ks._releasing:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    (rec,) = [r for r in caplog.records if "releasing it failed" in r.getMessage()]
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], KeyError)
    assert ks._record_retry[k.id] > time.monotonic()  # tried again later, not at once
    ks.release_done((), may_write=True)  # within the retry time: not submitted again
    assert k.id not in ks._releasing
    executor.shutdown()
