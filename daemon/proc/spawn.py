"""Helpers for starting and stopping gwstream's own processes (demo, replay, tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import Sequence

__all__ = ["bound_omp_spin", "free_tcp_endpoint", "keep_freed_memory", "spawn", "stop"]


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """A ``tcp://host:port`` endpoint on a port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    By default a block over 128 KiB (a threshold that rises only to the largest
    block freed so far) is its own ``mmap``, unmapped when freed, and the heap's
    free top is trimmed past 128 KiB; the next block of that size then faults in
    fresh zeroed pages. The search allocates and frees its MB-sized feature
    arrays every second of data, so a replay of an hour with a 605-pair network
    took 6.1 million page faults and 14 s of the kernel's time in 30 s. Here
    blocks up to ``mmap_threshold`` (32 MiB, glibc's maximum) come from the heap
    and up to ``trim_threshold`` of freed top is kept: the process's resident
    size stays at its high-water mark (flat over a long run) and the faults are
    gone. Linux with glibc only; elsewhere (or if ``mallopt`` refuses) returns
    False and changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and mallopt(_M_TOP_PAD, 16 << 20) == 1


def bound_omp_spin(count: int = 100_000) -> None:
    """Let OpenMP's idle threads spin ``count`` rounds before they sleep (``GOMP_SPINCOUNT``), unless the
    user set it.

    torch's and numba's parallel regions run on libgomp. The search worker
    asks for passive waiting (``OMP_WAIT_POLICY=PASSIVE``, see ``gwstream
    worker``) so that its idle threads leave the second core to the ingest and
    source processes; but then every region wakes its threads from sleep, and
    the 605-pair network runs hundreds of regions per second of data. A short
    spin keeps the thread for the next region (a spin far shorter than a
    block) and still sleeps between blocks, so replays run faster than with
    passive waiting alone. The variable overrides the wait policy's spin;
    libgomp reads it when it loads, so this must run before torch or numba is
    imported.
    """
    os.environ.setdefault("GOMP_SPINCOUNT", str(int(count)))


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
