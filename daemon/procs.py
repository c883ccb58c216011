"""Helpers for starting and stopping gwstream's own processes (demo, replay, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Sequence

__all__ = ["free_tcp_endpoint", "spawn", "stop"]


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """A ``tcp://host:port`` endpoint on a port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this child when the process that spawned it dies (even by SIGKILL).

    Without it a supervisor killed hard (OOM killer, ``kill -9``, a test timeout)
    would leave its ingest/search children running, holding ports and files.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def spawn(args: Sequence[str], *, log_path: str | os.PathLike | None = None, env: dict | None = None,
          inherit_stderr: bool = False) -> subprocess.Popen:
    """Start ``gwstream <args>`` with this interpreter; stderr (logs) to ``log_path`` if given, else to
    this process's stderr with ``inherit_stderr``, else discarded."""
    stderr = open(log_path, "ab") if log_path is not None else (None if inherit_stderr else subprocess.DEVNULL)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "gwstream.daemon.cli", *args],
            stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        if log_path is not None:
            stderr.close()


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
