"""``gwstream run`` / ``gwstream replay``: start the daemon's processes and keep them running.

The supervisor writes the effective configuration next to the outputs
(``<output.dir>/run-config.toml``), starts the ingest and search processes
(``gwstream ingest`` and ``gwstream worker search``) with it, and watches them:

* a child that dies unexpectedly is restarted after a backoff (1 s, doubling to
  30 s); ``max_restarts`` crashes of one child within ``window_s`` stop the
  daemon with a message naming the child, its exit code and its log;
* SIGTERM / SIGINT stop the children with SIGTERM (the search process
  persists its background and flushes its archive), then the supervisor exits;
* with ``exit_on_eos`` (replay), children that finish cleanly after the end of
  the stream are not restarted, and the supervisor returns once all are done.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gwstream.daemon.settings import to_toml

from .spawn import spawn, stop

__all__ = ["Supervisor", "Child", "write_run_config"]

log = logging.getLogger(__name__)


def write_run_config(cfg) -> Path:
    """The effective configuration as TOML under ``output.dir`` (the children read it)."""
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run-config.toml"
    path.write_text("# written by gwstream run/replay: the configuration its processes use\n" + to_toml(cfg.to_dict()))
    return path


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path | None = None
    proc: subprocess.Popen | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    done: bool = False
    starts: int = 0


def _last_line(path: Path, limit: int = 900) -> str:
    """``' (last line: ...)'`` of a child's log, or ``''``: the failure message then says why."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 8192))
            lines = [x for x in fh.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    line = lines[-1].strip()
    if len(line) > limit:  # the reason is usually at the end
        line = f"{line[: limit // 3]} ... {line[-(2 * limit) // 3 :]}"
    return f" (last line: {line})"


class Supervisor:
    """Start, watch, restart and stop the daemon's child processes.

    Parameters
    ----------
    children : list of Child
        Started in order (ingest before search).
    exit_on_eos : bool
        A child exiting with code 0 is finished (replay); otherwise any exit is a crash.
    max_restarts, window_s : int, float
        Give up when one child crashes ``max_restarts`` times within ``window_s``.
    backoff_s, backoff_max_s : float
        First restart delay and its cap (doubling per recent crash).
    """

    def __init__(self, children: list[Child], *, exit_on_eos: bool = False, max_restarts: int = 5,
                 window_s: float = 300.0, backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 stop_event: threading.Event | None = None):
        self.children = children
        self.exit_on_eos = exit_on_eos
        self.max_restarts = int(max_restarts)
        self.window_s = float(window_s)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.stop_event = stop_event or threading.Event()
        self.failure: str | None = None

    def _start(self, c: Child) -> None:
        c.proc = spawn(c.args, log_path=c.log_path, inherit_stderr=True)
        c.starts += 1
        c.restart_at = None
        log.info("started %s pid=%d%s", c.name, c.proc.pid, "" if c.starts == 1 else f" (restart {c.starts - 1})")

    def run(self) -> int:
        """Supervise until stopped, finished, or given up; returns the exit code (0, 1 on giving up)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop_event.set())
        for c in self.children:
            self._start(c)
        try:
            while not self.stop_event.wait(0.2):
                now = time.monotonic()
                for c in self.children:
                    if c.done:
                        continue
                    if c.proc is None:
                        if c.restart_at is not None and now >= c.restart_at:
                            self._start(c)
                        continue
                    code = c.proc.poll()
                    if code is None:
                        continue
                    stop(c.proc)
                    c.proc = None
                    if code == 0 and self.exit_on_eos:
                        c.done = True
                        log.info("%s finished", c.name)
                        continue
                    c.crashes = [t for t in c.crashes if now - t < self.window_s] + [now]
                    where = f"; see {c.log_path}{_last_line(c.log_path)}" if c.log_path else ""
                    if len(c.crashes) >= self.max_restarts:
                        self.failure = (f"{c.name} exited {len(c.crashes)} times within {self.window_s:.0f} s "
                                        f"(last exit code {code}){where}: giving up")
                        log.error("%s", self.failure)
                        return 1
                    delay = min(self.backoff_max_s, self.backoff_s * 2 ** (len(c.crashes) - 1))
                    c.restart_at = now + delay
                    log.warning("%s exited with code %s; restarting in %.1f s%s", c.name, code, delay, where)
                if self.children and all(c.done for c in self.children):
                    return 0
            return 0
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """SIGTERM every running child (search first: it persists its state), wait, kill stragglers."""
        for c in reversed(self.children):
            if c.proc is not None:
                code = stop(c.proc, timeout_s=30.0)
                log.info("stopped %s (exit code %s)", c.name, code)
                c.proc = None
