"""sd_notify: silent outside systemd, exact datagrams under it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollcap.notify import Notifier


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    n.ready("up")
    n.status("x")
    n.watchdog()
    n.reloading()
    n.stopping()


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


def test_messages_under_systemd(notify_socket: socket.socket) -> None:
    n = Notifier()
    n.ready("capturing on lo")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=capturing on lo"
    n.status("backlog 3 files")
    n.status("backlog 3 files")  # unchanged status is not re-sent
    n.watchdog()
    assert notify_socket.recv(4096) == b"STATUS=backlog 3 files"
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    n.reloading()
    n.stopping()
    assert notify_socket.recv(4096) == b"RELOADING=1"
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_a_signal_during_sd_notify_is_retried_not_fatal(
    notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # seen live: SIGHUP arriving during WATCHDOG=1 raised InterruptedError in the daemon
    from systemd import daemon

    real = daemon.notify
    calls = []

    def interrupted_once(msg: str) -> bool:
        calls.append(msg)
        if len(calls) == 1:
            raise InterruptedError(4, "Interrupted system call")
        return bool(real(msg))

    monkeypatch.setattr(daemon, "notify", interrupted_once)
    Notifier().watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert calls == ["WATCHDOG=1", "WATCHDOG=1"]

    def broken(msg: str) -> bool:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(daemon, "notify", broken)
    Notifier().stopping()  # systemd gone: logged nowhere, but never fatal
