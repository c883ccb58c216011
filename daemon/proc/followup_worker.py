"""The follow-up worker: a child process of the search that turns trigger snapshots into sky maps.

The search publishes each alert at once, then hands the trigger's snapshot
(:class:`~gwstream.daemon.stream.snapshot.TriggerSnapshot`) to
:class:`FollowupWorker` and goes on: :meth:`FollowupWorker.submit` only puts
it on a queue, and the search collects results with
:meth:`FollowupWorker.poll` between blocks. The child runs
:class:`~gwstream.daemon.followup.event.Followup` (template SNR series,
coinc.xml, BAYESTAR) with one OpenMP thread at low priority, so the search
keeps the cores it needs; a localisation however slow never delays an alert.

A burst beyond ``followup.max_pending`` queued snapshots is dropped (counted
and logged), a child that dies is started again, and its lost jobs are
reported as failures: the alerts they follow stand as they were sent.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import time
from collections import Counter
from pathlib import Path

__all__ = ["FollowupWorker", "run_followup"]

log = logging.getLogger(__name__)

#: environment of the child: BAYESTAR's OpenMP, numpy's BLAS and torch-free numerics on one thread
_CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_followup(followup, snap, alert: dict, out_dir: str) -> dict:
    """One job in the child: :meth:`Followup.run`, as a plain dict (what goes back to the search)."""
    from gwstream.daemon.followup.snr import FollowupError

    t0 = time.perf_counter()
    try:
        res = followup.run(snap, alert, out_dir)
    except FollowupError as exc:
        return {"event_id": alert["event_id"], "error": str(exc), "runtime_s": time.perf_counter() - t0}
    return {"event_id": res.event_id, "template": res.template, "skymap": res.skymap, "error": res.error,
            "coinc": str(res.coinc_path.resolve()), "runtime_s": time.perf_counter() - t0}


def _child(cfg, branch_pairs: int, out_dir: str, jobs, results, runner, parent: int) -> None:
    """The worker's loop: jobs in, result dicts out, until ``None`` or the parent is gone."""
    try:
        os.nice(10)
    except OSError:
        pass
    logging.basicConfig(level=logging.INFO, format="%(asctime)sZ %(levelname)s %(name)s %(message)s")
    logging.Formatter.converter = time.gmtime
    from gwstream.daemon.followup.event import Followup

    class _Model:  # the branch size is all Followup needs of the model
        template_pairs = branch_pairs

    followup = Followup.from_config(cfg, _Model())
    if followup.skymap:
        from gwstream.daemon.followup.localize import register_phase_convention

        register_phase_convention()  # imports ligo.skymap once, before the first job
    results.put({"ready": True})
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if job is None:
            return
        snap, alert = job
        try:
            out = runner(followup, snap, alert, out_dir)
        except Exception as exc:  # noqa: BLE001 - one job's failure is reported, the worker goes on
            out = {"event_id": alert["event_id"], "error": f"{type(exc).__name__}: {exc}"}
        results.put(out)


class FollowupWorker:
    """Hands snapshots to a child process and collects its results, never blocking the caller.

    Parameters
    ----------
    cfg : gwstream.daemon.config.Config
    branch_pairs : int
        The model's template-branch pairs (:class:`~gwstream.daemon.followup.event.Followup`).
    out_dir : str or Path
        Where coinc.xml and sky maps are written.
    runner : callable, optional
        ``runner(followup, snap, alert, out_dir) -> dict`` run per job in the
        child (a module-level function: it is pickled); :func:`run_followup` by default.
    """

    def __init__(self, cfg, branch_pairs: int, out_dir: str | Path, *, runner=run_followup):
        self.cfg = cfg
        self.branch_pairs = int(branch_pairs)
        self.out_dir = str(out_dir)
        self.runner = runner
        self.max_pending = int(cfg.followup.max_pending)
        self.counters: Counter[str] = Counter()
        self._ctx = mp.get_context("spawn")
        self._pending: dict[str, float] = {}  # event id -> monotonic time submitted
        self._proc = None
        self._start()

    def _start(self) -> None:
        self._jobs = self._ctx.Queue()
        self._results = self._ctx.Queue()
        saved = {k: os.environ.get(k) for k in _CHILD_ENV}
        os.environ.update(_CHILD_ENV)  # read by the child at its start (spawn copies the environment)
        try:
            self._proc = self._ctx.Process(target=_child, name="gwstream-followup", daemon=True,
                                           args=(self.cfg, self.branch_pairs, self.out_dir, self._jobs,
                                                 self._results, self.runner, os.getpid()))
            self._proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.counters["starts"] += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, snap, alert: dict) -> bool:
        """Queue a follow-up; False (and counted) when ``max_pending`` are already waiting."""
        if len(self._pending) >= self.max_pending:
            self.counters["dropped"] += 1
            log.warning("follow-up of %s dropped: %d already pending (followup.max_pending)", alert["event_id"],
                        len(self._pending))
            return False
        self._pending[alert["event_id"]] = time.monotonic()
        self._jobs.put((snap, alert))
        self.counters["submitted"] += 1
        return True

    def poll(self) -> list[dict]:
        """Results that have come back (never waits); restarts a dead child, failing its pending jobs."""
        out = []
        while True:
            try:
                res = self._results.get_nowait()
            except (queue.Empty, EOFError, OSError):
                break
            if res.get("ready"):
                continue
            t = self._pending.pop(res.get("event_id"), None)
            res["wait_s"] = None if t is None else time.monotonic() - t
            self.counters["failed" if res.get("error") else "done"] += 1
            out.append(res)
        if self._proc is not None and not self._proc.is_alive():
            code = self._proc.exitcode
            lost = list(self._pending)
            log.error("follow-up worker exited (code %s) with %d pending: restarting it", code, len(lost))
            for eid in lost:
                out.append({"event_id": eid, "error": f"follow-up worker exited (code {code})"})
                self.counters["failed"] += 1
            self._pending.clear()
            self.counters["restarts"] += 1
            self._start()
        return out

    def drain(self, timeout_s: float) -> list[dict]:
        """Wait up to ``timeout_s`` for every pending follow-up (end of a replay); returns their results."""
        out = self.poll()
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.1)
            out += self.poll()
        return out

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the child (pending jobs are abandoned)."""
        if self._proc is None:
            return
        try:
            self._jobs.put(None)
        except (OSError, ValueError):
            pass
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout_s)
        self._proc = None
        for q in (self._jobs, self._results):
            q.cancel_join_thread()
            q.close()
