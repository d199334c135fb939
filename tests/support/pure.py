"""What a unit test may not do: open a network connection (to PostgreSQL, the broker, anything).

Unit tests (``tests/unit``) run pure code on plain data. Each unit package's ``conftest.py`` exposes
:func:`pure`, which applies to every test there, so a test that reaches for a database or a broker
fails at once with a clear message, instead of passing only on a machine that runs the services.
"""

from __future__ import annotations

import socket
from typing import NoReturn

import pytest


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:
    raise AssertionError("A unit test opened a network connection; it belongs in tests/integration.")


@pytest.fixture(autouse=True)
def pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket of this test may connect anywhere."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
