"""Sensitivity with glitches: the same injections in clean and in glitchy noise, with and without autogating.

Runs, with the repository's CLI only:

1. ``gwstream simulate`` of ``--hours`` with injections, once with
   ``configs/simulate.toml`` (Gaussian noise) and once with
   ``configs/simulate-glitchy.toml`` (the same noise and injections, same seed,
   plus blips, scattered-light arches and loud transients, and their glitch file);
2. ``gwstream search --slides N --background-out`` of each: the clean data
   once, the glitchy data without gating and with ``whiten.gate_threshold``
   set (``--gates``, one search each); hierarchical removal as configured (on
   by default), so each search's own slides give an honest background;
3. ``gwstream evaluate`` of each against its own background, with the glitch
   file for the glitchy runs;
4. with ``--noise-seed S``, also injection-free data of each noise (seed S, the
   same glitch population), searched like each run (same gates, model and
   settings), and each run's triggers ranked against those slides: the
   injections of a mock set (one every ~27 s) stay in the search's own slides
   below the removal threshold, and pair with glitches there; real data has no
   such crowd.

    .venv/bin/python benchmarks/glitch_study.py --hours 12 --slides 100 --gates 25

Writes ``--out`` (JSON: every evaluate summary, the searches' counters and
timings) and a markdown table of sensitive distance at FAR 1/day and 1/month,
each as a ratio to the clean run's.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FARS = (1.0, 1.0 / 30)  # per day


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--slides", type=int, default=100)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--gates", type=float, nargs="*", default=[25.0], help="gate thresholds (sigma) to try")
    ap.add_argument("--work", default="out/glitch_study")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "glitch-study.json"))
    ap.add_argument("--rewrite", action="store_true", help="only re-render --out's JSON as markdown")
    ap.add_argument("--reuse", action="store_true", help="keep the runs already in --out (same --work), run the rest")
    ap.add_argument("--model", help="checkpoint searched with (default: the shipped model)")
    ap.add_argument("--settings", help="TOML every search reads (e.g. a ranking.removal_background made with "
                    "--model's own network); the gate threshold is added to its [whiten]")
    ap.add_argument("--noise-seed", type=int, help="also rank each run against the slides of injection-free noise "
                    "(the same configuration, this seed), searched the same way (gates, removal): a background no "
                    "injection can pollute, as real data has")
    ap.add_argument("--only", nargs="*", help="run only these runs (names as in the table)")
    ap.add_argument("--label", default="", help="prefix of the searches' files in --work (keeps runs of another "
                    "model apart; the data are shared)")
    args = ap.parse_args()
    if args.rewrite:
        write(json.loads(Path(args.out).read_text()), Path(args.out))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    duration = int(round(args.hours * 3600))
    gw = [sys.executable, "-m", "gwstream.daemon.cli"]
    res = {"benchmark": "glitch_study", "hours": args.hours, "seed": args.seed, "n_slides": args.slides, "runs": {},
           "model": args.model or "default", "settings": Path(args.settings).read_text() if args.settings else ""}
    if args.reuse and Path(args.out).exists():
        res = json.loads(Path(args.out).read_text())
    if args.noise_seed is not None:
        res["noise_seed"] = args.noise_seed
    res.setdefault("commands", []).append("benchmarks/glitch_study.py " + shlex.join(sys.argv[1:]))
    data = {}
    for noise, cfg in (("clean", "simulate.toml"), ("glitchy", "simulate-glitchy.toml")):
        out = work / f"{noise}-{duration}s-seed{args.seed}"
        paths = {"data": f"{out}.hdf", "injections": f"{out}-injections.hdf", "glitches": f"{out}-glitches.hdf"}
        if not Path(paths["data"]).exists():
            extra = ["--glitches", paths["glitches"]] if noise == "glitchy" else []
            res[f"simulate_{noise}_s"] = round(run(
                [*gw, "simulate", "--config", str(ROOT / "configs" / cfg), "--duration", str(duration), "--seed",
                 str(args.seed), "--out", paths["data"], "--injections", paths["injections"], "--no-progress",
                 *extra]), 1)
        if args.noise_seed is not None:
            paths["noise"] = f"{work / noise}-{duration}s-seed{args.noise_seed}-noinj.hdf"
            if not Path(paths["noise"]).exists():
                run([*gw, "simulate", "--config", str(ROOT / "configs" / cfg), "--duration", str(duration), "--seed",
                     str(args.noise_seed), "--out", paths["noise"], "--no-progress"])
        data[noise] = paths
    plans = [("clean", "clean", None), ("glitchy", "glitchy, no gating", None)]
    plans += [("glitchy", f"glitchy, gating at {g:g} sigma", g) for g in args.gates]
    for noise, name, gate in plans:
        if args.only and name not in args.only:
            continue
        if name in res["runs"]:
            if args.noise_seed is not None and "evaluate_noise_background" not in res["runs"][name]:
                res["runs"][name].update(noise_background(args, gw, work, noise, gate, data))
                Path(args.out).write_text(json.dumps(res, indent=1))
            continue
        tag = run_tag(args, noise, gate)
        trig, bg, search_s = search(args, gw, work, tag, gate, data[noise]["data"])
        summary = evaluate(gw, work, tag, data[noise], noise, trig, bg)
        from gwstream.daemon.io.archive import read_triggers

        _, attrs = read_triggers(trig)
        counters = attrs.get("counters")
        res["runs"][name] = {"noise": noise, "gate_threshold": gate, "search_s": round(search_s, 1),
                             "search_x_real_time": round(duration / search_s, 1), "evaluate": summary,
                             "counters": json.loads(counters) if isinstance(counters, str) else counters,
                             "n_gates": len(attrs.get("gates") or [])}
        if args.noise_seed is not None:
            res["runs"][name].update(noise_background(args, gw, work, noise, gate, data))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    write(res, Path(args.out))


def run_tag(args, noise: str, gate: float | None) -> str:
    """Prefix of a run's files in ``--work``."""
    return args.label + (f"{noise}-gate{gate:g}" if gate else f"{noise}-nogate")


def search_config(args, work: Path, tag: str, gate: float | None) -> list[str]:
    """``--config`` (and ``--model``) arguments of a search with ``--settings`` and the gate."""
    text = with_gate(Path(args.settings).read_text() if args.settings else "", gate)
    cfg = []
    if text:
        toml = work / f"{tag}.toml"
        toml.write_text(text)
        cfg = ["--config", str(toml)]
    return cfg + (["--model", args.model] if args.model else [])


def search(args, gw: list[str], work: Path, tag: str, gate: float | None, data: str) -> tuple[Path, Path, float]:
    """``gwstream search`` of ``data`` with ``--slides``, as run ``tag`` is configured: its trigger archive,
    its background and the seconds it took."""
    trig, bg = work / f"{tag}-triggers.hdf", work / f"{tag}-background.h5"
    seconds = run([*gw, "search", data, str(trig), "--slides", str(args.slides), "--background-out", str(bg),
                   "--no-progress", "--log-level", "warning", *search_config(args, work, tag, gate)])
    return trig, bg, seconds


def evaluate(gw: list[str], work: Path, tag: str, data: dict, noise: str, foreground: Path, background: Path) -> dict:
    """``gwstream evaluate`` of ``foreground`` against ``background`` with ``data``'s injections (and its glitch
    file for glitchy noise), into ``<tag>-evaluate``; its summary."""
    ev = work / f"{tag}-evaluate"
    glitches = ["--glitches", data["glitches"]] if noise == "glitchy" else []
    run([*gw, "evaluate", "--injections", data["injections"], "--foreground", str(foreground), "--background",
         str(background), "--out", str(ev), "--far-per-day", *[str(f) for f in FARS], *glitches])
    return json.loads((ev / "summary.json").read_text())


def noise_background(args, gw: list[str], work: Path, noise: str, gate: float | None, data: dict) -> dict:
    """The run's foreground ranked against the slides of injection-free noise searched the same way."""
    tag = run_tag(args, noise, gate) + f"-noinj{args.noise_seed}"
    fg = work / f"{run_tag(args, noise, gate)}-triggers.hdf"
    _, bg, search_s = search(args, gw, work, tag, gate, data[noise]["noise"])
    return {"noise_background_search_s": round(search_s, 1),
            "evaluate_noise_background": evaluate(gw, work, tag, data[noise], noise, fg, bg)}


def with_gate(text: str, gate: float | None) -> str:
    """``text`` (TOML) with ``whiten.gate_threshold = gate`` added to its ``[whiten]`` table (made when missing)."""
    if not gate:
        return text
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split("#")[0].strip() == "[whiten]":
            lines.insert(i + 1, f"gate_threshold = {gate}")
            return "\n".join(lines) + "\n"
    return text + f"\n[whiten]\ngate_threshold = {gate}\n"


def write(res: dict, out: Path) -> None:
    """JSON and markdown: sensitive distance at each FAR, and its ratio to the clean run's."""
    out.write_text(json.dumps(res, indent=1))
    runs = res["runs"]

    def dist(summary, f):
        for k, v in summary.get("at_far_per_day", {}).items():
            if abs(float(k) - f) <= 1e-5 * f:
                return v.get("distance_mpc"), v.get("volume_sigma_mpc3"), v.get("volume_mpc3")
        return None, None, None

    lines = [f"# Sensitivity with glitches: {res['hours']:g} h, {res['n_slides']} slides (own background), "
             f"seed {res['seed']}", "",
             "Commands: " + ", then ".join(f"`.venv/bin/python {c}`" for c in res.get("commands", [])) if
             res.get("commands") else "Command: `.venv/bin/python benchmarks/glitch_study.py --hours "
             f"{res['hours']:g} --slides {res['n_slides']}`", "",
             *([res["note"], ""] if res.get("note") else []),
             f"Model: {res.get('model', 'default')}" + (f"; settings:\n\n```toml\n{res['settings'].strip()}\n```"
                                                       if res.get("settings") else ""), "",
             "| run | gates | x real time | " + " | ".join(
                 f"distance at FAR 1/{1 / f:g} d (Mpc) | vs clean" for f in FARS) + " |",
             "|---|---|---|" + "---|---|" * len(FARS)]
    def cells(r: dict, key: str) -> str:
        """Distance at each FAR of ``r[key]`` and its ratio to the clean run's ``key``."""
        out = []
        for f in FARS:
            d, _, _ = dist(r[key], f)
            c = runs.get("clean", {}).get(key)
            dc = dist(c, f)[0] if c else None
            out += [f"{d:.0f}" if d is not None else "-", f"{d / dc:.3f}" if d is not None and dc else "-"]
        return " | ".join(out)

    for name, r in runs.items():
        lines.append(f"| {name} | {r.get('n_gates', '-')} | {r['search_x_real_time']} | {cells(r, 'evaluate')} |")
    if any("evaluate_noise_background" in r for r in runs.values()):
        lines += ["", f"Against the slides of injection-free noise (seed {res.get('noise_seed')}, the same "
                  "configuration and searches, no injections to pollute them, as in real data):", "",
                  "| run | " + " | ".join(f"distance at FAR 1/{1 / f:g} d (Mpc) | vs clean" for f in FARS) + " |",
                  "|---|" + "---|---|" * len(FARS)]
        for name, r in runs.items():
            if "evaluate_noise_background" in r:
                lines.append(f"| {name} | {cells(r, 'evaluate_noise_background')} |")
    for name, r in runs.items():
        g = r["evaluate"].get("glitch")
        if g:
            a = g["coincident"]["any"]
            lines += ["", f"**{name}**: {a['n_triggers']} triggers on glitches ({a['n_without_injection']} without "
                      f"an injection); of those without, {a['n_far_le_1_per_day_without_injection']} at FAR <= 1/day "
                      f"and {a['n_far_le_1_per_month_without_injection']} at FAR <= 1/month."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
