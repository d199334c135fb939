"""What a unit test may not do: open a network connection (to PostgreSQL, the broker, anything).

Unit tests (``tests/unit``) run pure code on plain data. Each unit package's ``conftest.py`` exposes
:func:`pure`, which applies to every test there, so a test that reaches for a database or a broker
fails at once with a clear message, instead of passing only on a machine that runs the services.

Only the test's own thread is refused: a background thread another test left running (a client
reconnecting to its broker) is not the unit test's doing and keeps its sockets.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest


def _refusing(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(sock: socket.socket, *args: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            raise AssertionError("A unit test opened a network connection; it belongs in tests/integration.")
        return original(sock, *args)

    return connect


@pytest.fixture(autouse=True)
def pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket of this test may connect anywhere."""
    monkeypatch.setattr(socket.socket, "connect", _refusing(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _refusing(socket.socket.connect_ex))
