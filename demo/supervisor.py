"""A small process supervisor: runs the platform's components as child processes, restarts any that
exits with exponential backoff, prefixes their output with their name, and stops them in order.

Why processes and not asyncio tasks in one process: a component that crashes, blocks its event loop
or leaks memory cannot take the others down; the API and the ingest can use both cores; and each
component is an ordinary ``eldercare`` command, so the demo runs exactly what a production unit runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import structlog

log = structlog.get_logger()


def die_with_parent() -> None:
    """In a child, before exec: receive SIGTERM when the parent dies (Linux), so a supervisor killed
    with SIGKILL leaves no orphans behind."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True, slots=True)
class Component:
    """One supervised program. ``argv[0]`` is executed directly (no shell)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Supervisor:
    """Runs ``components`` until ``stop`` is set. Backoff doubles from ``backoff_initial_s`` up to
    ``backoff_max_s`` seconds, and resets once a child has stayed up for ``stable_after_s`` seconds.
    On stop, each child's process group gets SIGTERM, then SIGKILL after ``stop_timeout_s`` seconds."""

    components: Sequence[Component]
    env: Mapping[str, str]
    cwd: Path
    output: TextIO = sys.stderr
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    stable_after_s: float = 60.0
    stop_timeout_s: float = 10.0
    restarts: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        """Start every component, keep them running, and return once ``stop`` is set and all exited."""
        width = max((len(c.name) for c in self.components), default=0)
        async with asyncio.TaskGroup() as group:
            for component in self.components:
                group.create_task(self._keep(component, stop, width))

    async def _keep(self, component: Component, stop: asyncio.Event, width: int) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial_s
        self.restarts.setdefault(component.name, 0)
        while not stop.is_set():
            started = loop.time()
            proc = await asyncio.create_subprocess_exec(
                *component.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.cwd,
                env={**self.env, **component.env},
                # Own process group: the terminal's Ctrl-C reaches only the supervisor, which then
                # stops the children in order instead of racing them.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            self.pids[component.name] = proc.pid
            log.info("supervisor.started", component=component.name, pid=proc.pid)
            assert proc.stdout is not None
            pump = asyncio.create_task(self._pump(component.name.rjust(width), proc.stdout))
            exited = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self._terminate(component.name, proc)
            stopping.cancel()
            await exited
            await pump
            if stop.is_set():
                break
            log.warning(
                "supervisor.exited", component=component.name, returncode=proc.returncode, restart_in_s=delay
            )
            if loop.time() - started >= self.stable_after_s:
                delay = self.backoff_initial_s
            self.restarts[component.name] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.backoff_max_s)
        self.pids.pop(component.name, None)

    async def _terminate(self, name: str, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("supervisor.kill", component=name, pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        # Anything the child left in its group (it should have stopped its own children).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.info("supervisor.stopped", component=name, returncode=proc.returncode)

    async def _pump(self, label: str, stream: asyncio.StreamReader) -> None:
        """Copy the child's output line by line, each prefixed with ``label``; chunked reads, so an
        overlong line cannot stall the pump."""
        pending = b""
        while chunk := await stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self.output.write(f"{label} | {line.decode(errors='replace')}\n")
            self.output.flush()
        if pending:
            self.output.write(f"{label} | {pending.decode(errors='replace')}\n")
            self.output.flush()
