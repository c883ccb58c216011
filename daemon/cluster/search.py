"""``gwstream search --workers N / --scheduler ADDRESS``: one search, its spans on a Dask cluster.

:func:`run_cluster_search` plans the spans (:func:`~gwstream.daemon.cluster.spans.plan_spans`),
submits one :func:`~gwstream.daemon.cluster.spans.run_span` task per span,
checks each span's lead-in against the span before it (running it again from
that span's conditioner when they differ), merges the results
(:func:`~gwstream.daemon.cluster.merge.merge_spans`) and writes the same
trigger archive and background one process writes.

The cluster is Dask's: a ``LocalCluster`` on this machine (``--workers N``),
a running scheduler (``--scheduler``), or worker jobs on HTCondor or Slurm
through ``dask-jobqueue`` (``[cluster] backend``). Dask reschedules the span
of a worker that died; a span that raised is tried ``cluster.retries`` more
times and then reported (the rest of the search completes and the archive
lists what was skipped).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from gwstream.daemon.config import Config
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.proc.offline import input_paths, input_segments, write_search_output
from gwstream.daemon.proc.preflight import load_scorer
from gwstream.daemon.stream.background import Background, initial_background_path
from gwstream.daemon.stream.pipeline import analysed_segments
from gwstream.daemon.units import NS

from .merge import merge_spans
from .spans import Span, SpanResult, plan_spans, run_span

__all__ = ["cluster_client", "jobqueue_cluster", "run_cluster_search", "span_config"]

log = logging.getLogger(__name__)


@contextmanager
def cluster_client(cfg: Config, *, workers: int | None = None, scheduler: str | None = None):
    """A Dask ``Client``: on ``scheduler`` (or ``cluster.scheduler``), else on a cluster this starts and stops:
    ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per core), or, with
    ``cluster.backend`` htcondor/slurm, a dask-jobqueue cluster of ``workers`` (default ``cluster.jobs``) jobs."""
    from distributed import Client

    c = cfg.cluster
    address = scheduler or c.scheduler
    if address:
        client = Client(address)
        try:
            yield client
        finally:
            client.close()
        return
    if c.backend == "local":
        from distributed import LocalCluster

        # GOMP_SPINCOUNT: what gwstream sets for itself before torch loads (proc.spawn.bound_omp_spin)
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0", local_directory=c.local_directory or None,
                               env={"GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "100000")})
    else:
        cluster = jobqueue_cluster(cfg)
        cluster.scale(jobs=workers or c.jobs)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def jobqueue_cluster(cfg: Config):
    """The dask-jobqueue cluster ``[cluster]`` describes (one single-threaded worker process per core)."""
    c = cfg.cluster
    common = dict(cores=c.cores, processes=c.cores, memory=c.memory, job_extra_directives=list(c.job_extra),
                  local_directory=c.local_directory or None,
                  job_script_prologue=[f"export GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', '100000')}"])
    try:
        if c.backend == "htcondor":
            from dask_jobqueue import HTCondorCluster

            extra = {}  # submit-file lines "key = value"
            for line in list(c.job_extra) + ([f"accounting_group = {c.account}"] if c.account else []):
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise ConfigError("cluster.job_extra", line, "HTCondor submit lines 'key = value'")
                extra[key.strip()] = value.strip()
            return HTCondorCluster(**{**common, "job_extra_directives": extra}, disk=c.disk)
        from dask_jobqueue import SLURMCluster

        return SLURMCluster(**common, walltime=c.walltime, queue=c.queue or None, account=c.account or None)
    except ImportError as exc:  # pragma: no cover - dask-jobqueue is a pinned dependency
        raise ConfigError("cluster.backend", c.backend, f"dask-jobqueue installed ({exc})") from None


def span_config(cfg: Config, initial: Background | None, threads: int = 1) -> Config:
    """The configuration a span runs with: no initial background (the merge adds it; its exact-list length is
    kept), and ``threads`` torch threads per worker unless ``model.threads`` says otherwise."""
    ranking = dataclasses.replace(cfg.ranking, background_init="none",
                                  background_exact=initial.n_exact if initial is not None else
                                  cfg.ranking.background_exact)
    model = dataclasses.replace(cfg.model, threads=cfg.model.threads or threads)
    return dataclasses.replace(cfg, ranking=ranking, model=model)


def run_cluster_search(inputs, output: str | Path, cfg: Config, *, workers: int | None = None,
                       scheduler: str | None = None, model: str | None = None, n_slides: int | None = None,
                       background_out: str | Path | None = None, progress: bool = True, client=None,
                       span_s: float | None = None) -> dict:
    """``gwstream search`` on a Dask cluster; writes what :func:`~gwstream.daemon.proc.offline.run_search` writes.

    ``client``: an existing Dask client to use (tests, ``gwstream campaign``);
    otherwise :func:`cluster_client` makes one from ``workers``/``scheduler``/``[cluster]``.
    """
    if client is None:
        with cluster_client(cfg, workers=workers, scheduler=scheduler) as c:
            return run_cluster_search(inputs, output, cfg, model=model, n_slides=n_slides,
                                      background_out=background_out, progress=progress, client=c, span_s=span_s)
    t0 = time.monotonic()
    scorer = load_scorer(cfg, model)  # here too: the slides' default and a bad checkpoint show before any task
    if n_slides is None:
        n_slides = cfg.ranking.n_slides_joint if scorer.model.joint else cfg.ranking.n_slides
    init_path = initial_background_path(cfg.ranking.background_init)
    initial = Background.load(init_path) if init_path is not None else None
    scfg = span_config(cfg, initial)
    bad_inputs: list[tuple[str, str]] = []
    segments = input_segments(inputs, cfg, unreadable=bad_inputs)
    paths = [p for p in input_paths(inputs) if str(p) not in {f for f, _ in bad_inputs}]
    if not paths or not segments:
        raise ConfigError("input", " ".join(str(p) for p in paths) or str(inputs),
                          "at least one readable input with data")
    plan = plan_spans(segments, scfg, n_slides, span_s=span_s)
    log.info("search on %s: %d spans of %.0f s of data (%d slides)", client, len(plan),
             sum(s.data_s for s in plan), n_slides)
    driver = _Driver(client, paths, scfg, plan, model, n_slides, progress)
    results, failed = driver.run()
    ok = [results[k] for k in sorted(results)]
    merged = merge_spans(ok, initial=initial)
    wall = time.monotonic() - t0
    data_s = sum(s.data_s for s in plan if s.index in results)
    meta = ok[0].meta
    unreadable = [{"file": f, "span": r.span.index, "error": e} for r in ok for f, e in r.unreadable]
    unreadable += [{"file": f, "span": None, "error": e} for f, e in bad_inputs]
    bg = merged.background
    summary = {
        "input": " ".join(str(p) for p in paths), "data_s": data_s, "wall_s": round(wall, 2),
        "speed_x_real_time": round(data_s / wall, 1) if wall > 0 else None,
        "n_triggers": len(merged.triggers), "livetime_s": merged.live_windows * meta["stride_ns"] / NS,
        "background_livetime_s": bg.livetime_s, "n_slides": meta["n_slides"], "model": meta["model"],
        "model_sha256": meta["model_sha256"], "merger_offset_s": meta["merger_offset_s"],
        "counters": dict(merged.counters), "unreadable": unreadable,
        "gates": [{"ifo": i, "gps": t, "peak_sigma": p} for i, t, p in merged.gates],
        "removal_stat": meta["removal_stat"],
        "workers": len(client.scheduler_info().get("workers", {})) if hasattr(client, "scheduler_info") else None,
        "spans": [{"span": r.span.index, "start": r.span.start_ns / NS, "end": r.span.end_ns / NS,
                   "data_s": r.span.data_s, "lead_s": round(r.lead_s, 1), "wall_s": round(r.wall_s, 2),
                   **r.timing,
                   "checked": "cold start" if r.span.cold else ("rerun from the span before" if r.seeded
                                                                  else "lead-in matched")}
                  for r in ok],
        "skipped_spans": [{"span": k, "start": plan[k].start_ns / NS, "end": plan[k].end_ns / NS, "error": e}
                          for k, e in sorted(failed.items())],
    }
    segs = analysed_segments(merged.segments, meta["stride_ns"], round(meta["merger_offset_s"] * NS))
    write_search_output(output, merged.triggers, summary, segs, bg, background_out)
    log.info("search done on %d spans: %.0f s of data in %.1f s (%.0fx real time), %d triggers, %d spans rerun, "
             "%d skipped", len(ok), data_s, wall, data_s / max(wall, 1e-9), len(merged.triggers),
             sum(r.seeded for r in ok), len(failed))
    return summary


class _Driver:
    """Submits the spans, checks each lead-in as results come, reruns a span whose lead-in did not converge."""

    def __init__(self, client, paths, cfg: Config, plan: list[Span], model, n_slides: int, progress: bool):
        self.client, self.paths, self.cfg, self.plan = client, paths, cfg, plan
        self.model, self.n_slides = model, n_slides
        self.token = uuid.uuid4().hex[:8]
        self.bar = None
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=sum(s.data_s for s in plan), unit="s", desc="search", leave=False)

    def submit(self, span: Span, seed: dict | None = None):
        key = f"gwstream-span-{span.index}-{'seeded-' if seed is not None else ''}{self.token}"
        return self.client.submit(run_span, self.paths, self.cfg, span, model=self.model, n_slides=self.n_slides,
                                  seed=seed, key=key, retries=self.cfg.cluster.retries, pure=False)

    def run(self) -> tuple[dict[int, SpanResult], dict[int, str]]:
        from distributed import as_completed

        futures = {self.submit(s): s for s in self.plan}
        pending = as_completed(list(futures))
        done: dict[int, SpanResult] = {}  # finished, not yet checked
        settled: dict[int, SpanResult] = {}
        failed: dict[int, str] = {}
        nxt = 0  # the first span not yet settled (or failed)
        for fut in pending:
            span = futures.pop(fut)
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a span's failure is reported, the others go on
                failed[span.index] = f"{type(exc).__name__}: {exc}"
                log.error("%s failed and is left out: %s", span.describe(), failed[span.index])
                self._advance(span.data_s)
            else:
                if not res.seeded:
                    self._advance(span.data_s)
                done[span.index] = res
            fut.release()
            # settle in time order: span k is kept once span k - 1 is and their conditioners agree
            while nxt < len(self.plan) and (nxt in done or nxt in failed):
                if nxt in failed:
                    nxt += 1
                    continue
                res = done.pop(nxt)
                before = settled.get(nxt - 1)
                if res.span.cold or res.seeded or before is None or res.entry_digest == before.exit_digest:
                    if before is not None:
                        before.exit_state = None  # no longer needed: the memory goes
                    if not res.span.cold and before is None:
                        log.warning("%s: the span before it failed; its lead-in cannot be checked", res.span.describe())
                    settled[nxt] = res
                    nxt += 1
                    continue
                log.info("%s: lead-in conditioner differs from the span before's; rerunning it from that state",
                         res.span.describe())
                fut2 = self.submit(res.span, seed=before.exit_state)
                futures[fut2] = res.span
                pending.add(fut2)
                break
        if self.bar is not None:
            self.bar.close()
        return settled, failed

    def _advance(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(seconds)
