"""Sky-map, chirp-mass accuracy of the alerts' follow-up on found injections (issue 29).

Simulates ``--hours`` of Gaussian noise with BBH injections of network SNR
uniform in 8-30 (IMRPhenomXPHM, aligned spins, random sky positions; the
default model never saw this data), searches it with the default model and
configuration, FARs from the shipped noise-only background (``--slides 0``),
and for every injection found at FAR <= 1/day
runs the follow-up exactly as the daemon's worker does: the template placed
from the snapshot of the search's whitened data, its SNR series, coinc.xml,
BAYESTAR. As a reference the same snapshot is filtered with the injection's
own parameters (the "true template", IMRPhenomD) and localised too.

Writes ``<out>/skymap_accuracy.json`` (per injection: searched probability
and area, 50/90 % areas, template and true chirp mass, BAYESTAR runtime) and
the P-P plot ``<out>/skymap_pp.png``; prints the summary.

    .venv/bin/python benchmarks/skymap_accuracy.py --hours 2 --out out/skymap-bench --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

log = logging.getLogger("skymap_accuracy")
SNR_RANGE = (8.0, 30.0)
FAR_MAX_HZ = 1.0 / 86400


def simulate(out: Path, hours: float, seed: int) -> tuple[Path, Path]:
    import subprocess
    import sys

    data, inj = out / "data.hdf", out / "injections.hdf"
    if data.exists() and inj.exists():
        return data, inj
    cfg = out / "simulate.toml"
    cfg.write_text("[simulate.injections]\n"
                   f"snr = [{SNR_RANGE[0]}, {SNR_RANGE[1]}]\nspacing_s = 20.0\njitter_s = 3.0\n")
    subprocess.run([sys.executable, "-m", "gwstream.daemon.cli", "simulate", "--config", str(cfg), "--duration",
                    str(int(hours * 3600)), "--seed", str(seed), "--out", str(data), "--injections", str(inj),
                    "--no-progress"], check=True)
    return data, inj


def search(data: Path, slides: int):
    """The daemon's pipeline over the file; snapshots of every trigger at FAR <= 2/day when it was ranked.

    FARs come from the shipped background (35 days of time slides of pure noise, made with this
    conditioning) plus ``slides`` slides of this data: an injection every 20 s slid against the other
    detector's noise would make the data's own background far louder than nature's.
    """
    from gwstream.daemon.config import load_config
    from gwstream.daemon.io.alerts import event_id
    from gwstream.daemon.proc.offline import file_blocks
    from gwstream.daemon.proc.preflight import load_scorer
    from gwstream.daemon.stream.pipeline import SearchStage

    cfg = load_config(None, {"ranking": {"background_init": "default"}})
    scorer = load_scorer(cfg)
    stage = SearchStage(cfg, scorer, n_slides=slides, snapshots=True)
    triggers, snaps = [], {}
    blocks = file_blocks(data, cfg)
    t0 = time.monotonic()

    def follow(found, final=False):
        for t in found:
            triggers.append(t)
            if t.far <= 2 * FAR_MAX_HZ:
                stage.request_snapshot(t, event_id(t.gps_ns))
        for s in stage.snapshots(final=final):
            snaps[s.event_id] = s

    while batch := list(itertools.islice(blocks, cfg.model.group_blocks)):
        for found in stage.process_many(batch):
            follow(found)
    follow(stage.finish(), final=True)
    log.info("search: %d triggers, %d snapshots in %.0f s", len(triggers), len(snaps), time.monotonic() - t0)
    return cfg, scorer, triggers, snaps


def _localise(job):
    """One injection in a pool process: our template and the true one, each through coinc.xml and BAYESTAR."""
    from gwstream.daemon.followup.localize import localize_coinc, searched
    from gwstream.daemon.followup.snr import FollowupError, TemplateBankParams, template_snr
    from gwstream.daemon.io.coincxml import write_coinc_xml
    from ligo.skymap.io import fits

    snap, alert, true_params, ra, dec, out, bank_path, neighbours, branch_maps = job
    bank = TemplateBankParams(bank_path)
    row = {"event_id": snap.event_id}
    for kind in ("search", "true"):
        try:
            if kind == "search":
                s = snap if branch_maps else dataclasses.replace(snap, template_index=None)
                res = template_snr(s, bank, neighbours=neighbours)
            else:
                res = template_snr(dataclasses.replace(snap, template_index=None), TemplateBankParams.from_rows(
                    [true_params]))
            d = out / kind
            xml = write_coinc_xml(alert, d, template=res.params, detectors=res.detectors, psds=snap.psds)
            sky = localize_coinc(xml, d / f"{snap.event_id}.multiorder.fits")
            p, a = searched(fits.read_sky_map(str(sky.path), moc=True), np.degrees(ra), np.degrees(dec))
        except FollowupError as exc:
            row[kind] = {"error": str(exc)}
            continue
        row[kind] = {"searched_prob": p, "searched_area_deg2": a, "area_50_deg2": sky.area_50_deg2,
                     "area_90_deg2": sky.area_90_deg2, "runtime_s": sky.runtime_s, "chirp_mass": res.chirp_mass,
                     "network_snr": res.network_snr, "template": res.params,
                     "snr": {x.ifo: x.snr for x in res.detectors}}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=2901)
    ap.add_argument("--slides", type=int, default=0, help="time slides of the data itself, added to the "
                    "shipped background")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("out/skymap-bench"))
    ap.add_argument("--record", type=Path, default=None, help="also write the record: RECORD.md, .json and "
                    "-pp.png (e.g. benchmarks/results/skymap-accuracy)")
    ap.add_argument("--from-files", action="store_true", help="summarise the sky maps already in --out (a run cut "
                    "short) instead of searching and localising")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    import h5py
    from gwstream.daemon.eval.evaluate import match_injections
    from gwstream.daemon.followup.event import Followup
    from gwstream.daemon.io.alerts import make_alert

    data, inj_path = simulate(args.out, args.hours, args.seed)
    with h5py.File(inj_path, "r") as f:
        inj = {k: f[k][()] for k in f.keys()}
    if args.from_files:
        rows = rows_from_files(args.out, inj)
        summary = summarise(rows) | {"hours": args.hours, "seed": args.seed, "slides": args.slides,
                                     "n_injections": int(inj["tc"].size), "from_files": True}
        (args.out / "skymap_accuracy.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
        pp_plot(rows, args.out / "skymap_pp.png")
        if args.record:
            write_record(args.record, summary, rows)
        print(json.dumps(summary, indent=1))
        return
    cfg, scorer, triggers, snaps = search(data, args.slides)
    followup = Followup.from_config(cfg, scorer.model)
    times = np.array([t.gps_ns / 1e9 for t in triggers])
    idx = match_injections(inj["tc"], times, np.array([t.stat for t in triggers]),
                           np.array([t.var for t in triggers]))
    jobs = []
    wanted: set[str] = set()
    n_found = 0
    for i, k in enumerate(idx):
        if k < 0 or not triggers[k].far <= FAR_MAX_HZ or not SNR_RANGE[0] <= inj["network_snr"][i] <= SNR_RANGE[1]:
            continue
        n_found += 1
        t = triggers[k]
        from gwstream.daemon.io.alerts import event_id

        snap = snaps.get(event_id(t.gps_ns))
        if snap is None:
            log.warning("injection %d found at %.3f has no snapshot", i, t.gps_ns / 1e9)
            continue
        alert = make_alert(t, ifos=cfg.data.ifos, background_livetime_s=1.0, n_slides=args.slides,
                           model_name=scorer.name, model_sha256=scorer.sha256, latency={}, created_unix_ns=0)
        true = {k2: float(inj[k2][i]) for k2 in ("mass1", "mass2", "spin1z", "spin2z")}
        wanted.add(snap.event_id)
        if all((args.out / kind / f"{snap.event_id}.multiorder.fits").exists() for kind in ("search", "true")):
            continue  # localised by an earlier run of this script on the same data
        jobs.append((snap, alert, true, float(inj["ra"][i]), float(inj["dec"][i]), args.out,
                     str(followup.bank.path), followup.neighbours, followup.branch_maps))
    log.info("%d injections in %s, %d found at FAR <= 1/day with network SNR %s, %d to localise", inj["tc"].size,
             data, n_found, SNR_RANGE, len(jobs))
    t0 = time.monotonic()
    errors = []
    with ProcessPoolExecutor(args.workers) as pool:
        for n, row in enumerate(pool.map(_localise, jobs, chunksize=1)):
            errors += [f"{row['event_id']} {kind}: {row[kind]['error']}" for kind in ("search", "true")
                       if "error" in row.get(kind, {})]
            if n % 20 == 0:
                log.info("localised %d / %d (%.0f s)", n + 1, len(jobs), time.monotonic() - t0)
    # every found injection's two sky maps are on disk now (this run's and any earlier run's): read them back
    rows = [r for r in rows_from_files(args.out, inj) if r["event_id"] in wanted]
    summary = summarise(rows)
    summary["errors"] = errors
    summary |= {"hours": args.hours, "seed": args.seed, "slides": args.slides, "n_injections": int(inj["tc"].size),
                "n_found": n_found, "localise_wall_s": round(time.monotonic() - t0, 1)}
    (args.out / "skymap_accuracy.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    pp_plot(rows, args.out / "skymap_pp.png")
    if args.record:
        write_record(args.record, summary, rows)
    print(json.dumps(summary, indent=1))


def write_record(stem: Path, summary: dict, rows: list) -> None:
    """``stem.json`` (summary and rows), ``stem-pp.png`` and ``stem.md`` (the tables)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    png = stem.parent / f"{stem.name}-pp.png"
    pp_plot(rows, png)
    s, t = summary["search"], summary["true"]
    lines = [f"# Sky maps and chirp mass of the alerts' follow-up ({summary['n_injections']} injections, "
             f"{summary['hours']:g} h, seed {summary['seed']})", "",
             f"Found at FAR <= 1/day with network SNR 8-30 and localised: {s['n']} (gwstream's template) and "
             f"{t['n']} (the injection's own parameters, the reference).", "",
             "| | gwstream template | true template (reference) |", "|---|---|---|",
             f"| sky maps | {s['n']} | {t['n']} |",
             f"| 90 % area, median | {s['area90_median_deg2']:.0f} deg² | {t['area90_median_deg2']:.0f} deg² |",
             f"| 90 % area, 90th percentile | {s['area90_p90_deg2']:.0f} deg² | {t['area90_p90_deg2']:.0f} deg² |",
             f"| 50 % area, median | {s['area50_median_deg2']:.0f} deg² | {t['area50_median_deg2']:.0f} deg² |",
             f"| P-P inside the 95 % binomial band at 10..90 % | {s['pp_inside_band']} | {t['pp_inside_band']} |",
             f"| BAYESTAR runtime, median (1 thread) | {s['runtime_median_s']:.1f} s | {t['runtime_median_s']:.1f} s |",
             "", "P-P: fraction of injections inside the X % credible region (95 % binomial band):", "",
             "| X | gwstream | band | reference | band |", "|---|---|---|---|---|"]
    for x in s["pp"]:
        lo, hi = s["pp_band_95"][x]
        lo_t, hi_t = t["pp_band_95"][x]
        lines.append(f"| {x} | {s['pp'][x]:.3f} | {lo:.3f}–{hi:.3f} | {t['pp'][x]:.3f} | {lo_t:.3f}–{hi_t:.3f} |")
    lines += ["", f"Chirp mass of gwstream's template: median relative error {s['chirp_mass_rel_err_median']:.3f}, "
                  f"90th percentile {s['chirp_mass_rel_err_p90']:.3f} (detector frame).", "",
              f"![P-P plot]({png.name})", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))


def rows_from_files(out: Path, inj: dict) -> list[dict]:
    """Rows of the injections whose two sky maps (search and true template) are both on disk."""
    from gwstream.daemon.followup.localize import credible_areas, searched
    from gwstream.daemon.sim.injections import chirp_mass
    from igwn_ligolw import lsctables
    from igwn_ligolw import utils as ligolw_utils
    from ligo.skymap.io import fits

    rows = []
    for fs in sorted((out / "search").glob("*.multiorder.fits")):
        name = fs.name.removesuffix(".multiorder.fits")
        ft = out / "true" / fs.name
        if not ft.exists():
            continue
        t = int(name.split("-")[-1]) / 1e3
        i = int(np.argmin(np.abs(inj["tc"] - t)))
        row = {"event_id": name, "injection": i, "network_snr": float(inj["network_snr"][i]),
               "chirp_mass_true": float(chirp_mass(inj["mass1"][i], inj["mass2"][i]))}
        for kind, path in (("search", fs), ("true", ft)):
            m = fits.read_sky_map(str(path), moc=True)
            p, a = searched(m, np.degrees(inj["ra"][i]), np.degrees(inj["dec"][i]))
            a50, a90 = credible_areas(m)
            doc = ligolw_utils.load_filename(str(out / kind / f"{name}.xml"))
            sngl = lsctables.SnglInspiralTable.get_table(doc)
            row[kind] = {"searched_prob": p, "searched_area_deg2": a, "area_50_deg2": a50, "area_90_deg2": a90,
                         "runtime_s": float(m.meta.get("runtime", np.nan)), "chirp_mass": float(sngl[0].mchirp),
                         "snr": {r.ifo: float(r.snr) for r in sngl}}
        rows.append(row)
    return rows


def summarise(rows) -> dict:
    from scipy.stats import binom

    out = {}
    for kind in ("search", "true"):
        ok = [r[kind] for r in rows if "searched_prob" in r.get(kind, {})]
        p = np.array([x["searched_prob"] for x in ok])
        a90 = np.array([x["area_90_deg2"] for x in ok])
        a50 = np.array([x["area_50_deg2"] for x in ok])
        n = p.size
        levels = np.round(np.arange(0.1, 1.0, 0.1), 1)
        frac = [float(np.mean(p <= x)) for x in levels]
        band = [(float(binom.ppf(0.025, n, x) / n), float(binom.ppf(0.975, n, x) / n)) for x in levels]
        out[kind] = {
            "n": n, "errors": sum(1 for r in rows if "error" in r.get(kind, {})),
            "pp": {f"{x:.1f}": f for x, f in zip(levels, frac)},
            "pp_band_95": {f"{x:.1f}": b for x, b in zip(levels, band)},
            "pp_inside_band": bool(all(lo <= f <= hi for f, (lo, hi) in zip(frac, band))),
            "area90_median_deg2": float(np.median(a90)), "area90_p90_deg2": float(np.percentile(a90, 90)),
            "area50_median_deg2": float(np.median(a50)),
            "runtime_median_s": float(np.median([x["runtime_s"] for x in ok])),
        }
        if kind == "search":
            mc = np.array([x["chirp_mass"] for x in ok])
            true = np.array([r["chirp_mass_true"] for r in rows if "searched_prob" in r.get(kind, {})])
            rel = np.abs(mc - true) / true
            out[kind] |= {"chirp_mass_rel_err_median": float(np.median(rel)),
                          "chirp_mass_rel_err_p90": float(np.percentile(rel, 90))}
    return out


def pp_plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import ligo.skymap.plot  # noqa: F401 - registers the pp_plot projection
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(111, projection="pp_plot")
    ax.add_diagonal()
    n = 0
    for kind, label in (("search", "gwstream template"), ("true", "true template (reference)")):
        p = [r[kind]["searched_prob"] for r in rows if "searched_prob" in r.get(kind, {})]
        n = max(n, len(p))
        ax.add_series(p, label=f"{label} ({len(p)})")
    ax.add_confidence_band(n, alpha=0.95)
    ax.set_xlabel("credible level")
    ax.set_ylabel("fraction of injections inside it")
    ax.legend(loc="upper left")
    ax.set_title("BAYESTAR P-P, found injections (FAR <= 1/day)")
    fig.savefig(path, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()
