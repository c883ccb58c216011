"""``gwstream campaign``: an injection campaign's searches on one Dask cluster, then ``gwstream evaluate``.

The foreground (data with injections) and, when given, a noise-only
background stretch are searched in spans on the same cluster
(:func:`~gwstream.daemon.cluster.search.run_cluster_search`, results equal to
one process's); the sensitivity then comes from
:func:`~gwstream.daemon.eval.evaluate.run_evaluate` against the time-slid
background of the noise-only search, or of the foreground's own search when
there is no noise-only data.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gwstream.daemon.config import Config
from gwstream.daemon.eval.evaluate import run_evaluate

from .search import cluster_client, run_cluster_search

__all__ = ["run_campaign"]

log = logging.getLogger(__name__)


def run_campaign(injections: str | Path, foreground, out: str | Path, cfg: Config, *, background=None,
                 workers: int | None = None, scheduler: str | None = None, far_per_day=(1.0, 10.0, 100.0),
                 progress: bool = True, client=None) -> dict:
    """Search ``foreground`` (and ``background``) on one cluster and evaluate; writes under ``out``:
    ``foreground.h5``, ``foreground-background.h5`` (its time-slid background), the same for ``background``,
    ``summary.json`` and the plots of ``gwstream evaluate``, and ``campaign.json`` (both searches' summaries)."""
    if client is None:
        with cluster_client(cfg, workers=workers, scheduler=scheduler) as c:
            return run_campaign(injections, foreground, out, cfg, background=background, far_per_day=far_per_day,
                                progress=progress, client=c)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    searches = {}
    fg_bg = out / "foreground-background.h5"
    searches["foreground"] = run_cluster_search(foreground, out / "foreground.h5", cfg, background_out=fg_bg,
                                                progress=progress, client=client)
    bg_store = fg_bg
    if background:
        bg_store = out / "background-background.h5"
        searches["background"] = run_cluster_search(background, out / "background.h5", cfg,
                                                    background_out=bg_store, progress=progress, client=client)
    summary = run_evaluate(injections, out / "foreground.h5", bg_store, out, far_per_day=far_per_day)
    record = {"searches": searches, "background_used": str(bg_store),
              "evaluate": {k: summary[k] for k in ("n_injections", "sensitive_distance_mpc", "out") if k in summary}}
    (out / "campaign.json").write_text(json.dumps(record, indent=1, default=str))
    log.info("campaign done: %s", record["evaluate"])
    return record
