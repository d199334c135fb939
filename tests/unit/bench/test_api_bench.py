"""The API bench's measure of what a request costs the server: CPU time from /proc, the server's
processes and their descendants (the workers of ``serve --workers N``) included."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.api import server_cpu_s

pytestmark = pytest.mark.unit


def test_cpu_time_counts_the_process_and_its_children() -> None:
    before = server_cpu_s(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while server_cpu_s(os.getpid()) - before < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_cpu_s(os.getpid()) - before >= 0.25  # the child's busy 0.3 s, seen while it runs
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_costs_nothing() -> None:
    assert server_cpu_s(2**22 + 12345) == 0.0
