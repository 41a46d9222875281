"""The offload's release of a done keep: a failure it does not expect is logged
with its traceback and the keep is tried again, never stuck in _releasing."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from rollcap.keep.request import KeepRequest

S = 1_000_000_000


def test_a_release_that_raises_is_logged_and_the_keep_is_free_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rollcap.config.load import validate_data
    from rollcap.notify import Notifier
    from rollcap.offload import service
    from rollcap.storage import open_storage

    cfg = validate_data({
        "spool": {"directory": str(tmp_path / "spool")},
        "offload": {"destination": f"file://{tmp_path}/archive", "concurrency": 1},
    })  # fmt: skip
    svc = service.OffloadService(cfg, open_storage(cfg.offload), Notifier())
    k = KeepRequest(id="k1", reason="r", since_ns=S, until_ns=2 * S, created_ns=S, source="cli")

    def bug(*_a: object) -> str:
        raise KeyError("a bug")

    monkeypatch.setattr(service, "write_record", bug)
    monkeypatch.setattr(svc.storage, "manifests", True, raising=False)
    monkeypatch.setattr(svc.shipping, "refresh", lambda: False)
    monkeypatch.setattr(svc.shipping, "keeps", [k])
    monkeypatch.setattr(svc.shipping, "done", lambda _in_flight: [k])
    svc.checked = True
    with caplog.at_level(logging.ERROR, "rollcap.offload"):
        svc._keeps()  # the offload loop's look at the keeps
        deadline = time.monotonic() + 10
        while k.id in svc._releasing:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    (rec,) = [r for r in caplog.records if "releasing it failed" in r.getMessage()]
    assert rec.exc_info is not None and isinstance(rec.exc_info[1], KeyError)
    assert svc._record_retry[k.id] > time.monotonic()  # tried again later, not at once
    svc.executor.shutdown()
