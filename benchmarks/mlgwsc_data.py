"""Test data made with the official MLGWSC-1 generator (datasets 1-3), with provenance.

The first ML gravitational-wave search mock data challenge (MLGWSC-1, Schäfer et al.
2023) ships its data generator, ``generate_data.py``, in the repository
``gwastro/ml-mock-data-challenge-1``, together with the O3a-like PSDs of datasets 2
and 3 (``psds/{H1,L1}/psd-*.hdf``) and the injection priors (``ds*.ini``). This
script runs that generator, unmodified, from a checkout given by ``--generator``
(nothing outside this repository is imported at import time) and writes to ``--out``:

- ``foreground.hdf``: noise plus injections (``--output-foreground-file``);
- ``background.hdf``: the same noise without injections (``--output-background-file``);
- ``injections.hdf``: the injection table (``--output-injection-file``; PyCBC's
  ``pycbc_create_injections`` with ``ds<N>.ini``, one injection every 24 ± 3 s over
  the whole extent of the segment list; the generator injects those whose ``tc`` lies
  30 s or more inside a segment);
- ``injections-in-data.hdf``: the rows of ``injections.hdf`` that were injected
  (same columns and attributes), for evaluations that count every row inside the
  analysed time (``gwstream evaluate`` counts those in the last 30 s of a segment);
- ``segments.csv``: the segment list the generator read (see below);
- ``provenance.json``: the exact commands, the generator's commit and file hashes,
  the seeds (also the per-detector noise seeds the generator derives), the segments
  written, the PSD file drawn for every segment and detector, counts and timings.

Both strain files are in the community mock-data layout (groups ``H1/``, ``L1/``, one
dataset per contiguous segment named by its GPS start, attributes ``start_time`` and
``delta_t``), which ``gwstream search`` reads. Dataset 3 draws a new PSD (one of 20
per detector) for every segment; dataset 2 draws one per detector for the whole set;
dataset 1 uses aLIGOZeroDetHighPower. Dataset 4 (real O3a noise) is refused: its
noise file has to be downloaded.

Segment list
------------
The generator takes its GPS segments (H1-L1 coincident O3a times) from
``segments.csv``, which it downloads from the challenge's server on first use and
keeps next to ``generate_data.py``; it is not in the repository. Pass a copy with
``--segments``. Without one this script writes a stand-in list, seeded by
``--segments-seed``: from GPS 1238166018 (the start of O3a) segments whose lengths are
log-uniform in 1,800-36,000 s, separated by gaps log-uniform in 60-7,200 s, until the
segments of at least 7,200 s (the generator's ``min_segment_duration``; shorter ones
it skips, so they become longer gaps) hold ``--start-offset + --duration``. The
generator then cuts its usual way (the last segment ends at the requested duration).
The stand-in's segments for a longer duration begin with those of a shorter one, so a
short set is a prefix of a long one made with the same seeds.

Run-time adaptations (the generator's files are not edited)
-----------------------------------------------------------
- ``ligo.segments`` (``ligo-segments``), which ``generate_data.py`` imports, was
  renamed ``igwn_segments`` with the same API; when ``ligo.segments`` is missing the
  runner registers ``igwn_segments`` under that name.
- ``load_segments`` is wrapped so that it reads the segment list in ``--out`` rather
  than downloading one; ``load_frequencyseries`` is wrapped to record which PSD file
  each segment drew. Neither changes what is generated.
- The generator runs with the generator checkout as working directory (its PSD paths
  are relative) and with this interpreter's ``bin/`` first on ``PATH`` (it calls
  ``pycbc_create_injections`` as a subprocess and ignores its exit status, so this
  script checks that the injection file exists).

Reproduce
---------
::

    # a checkout of the generator, e.g. git archive of gwastro/ml-mock-data-challenge-1
    .venv/bin/python benchmarks/mlgwsc_data.py --generator /path/to/ml-mock-data-challenge-1 \\
        --dataset 3 --duration 43200 --seed 303 --segments-seed 2 --out /data/ds3

The same arguments (and the same generator commit, PyCBC version and segment list)
give the same files; ``provenance.json`` records all of them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

O3A_START_GPS = 1238166018
MIN_SEGMENT_S = 7200  # generate_data.get_noise's min_segment_duration
INJECTION_PADDING_S = 30  # generate_data.main: make_injections(padding_start=30, padding_end=30)


# ----------------------------------------------------------------- runner
def run_generator(config_path: str) -> None:
    """Run ``generate_data.main`` in this process with the adaptations in the module notes.

    Parameters
    ----------
    config_path : str
        JSON file with ``generator`` (checkout), ``segments`` (CSV), ``argv`` (the
        generator's arguments) and ``psd_log`` (JSON file to write).
    """
    cfg = json.loads(Path(config_path).read_text())
    shim = None
    try:
        import ligo.segments
    except ImportError:
        import types

        import igwn_segments
        try:
            import ligo
        except ImportError:
            ligo = types.ModuleType("ligo")
            ligo.__path__ = []
            sys.modules["ligo"] = ligo
        sys.modules["ligo.segments"] = igwn_segments
        ligo.segments = igwn_segments
        shim = f"ligo.segments -> igwn_segments {getattr(igwn_segments, '__version__', '?')}"
    sys.path.insert(0, cfg["generator"])
    os.chdir(cfg["generator"])
    import generate_data as gen

    load_segments = gen.load_segments
    gen.load_segments = lambda path=None: load_segments(path=cfg["segments"] if path is None else path)
    psd_files: list[str] = []
    load_fs = gen.load_frequencyseries

    def logged_load(path, *args, **kwargs):
        psd_files.append(str(path))
        return load_fs(path, *args, **kwargs)

    gen.load_frequencyseries = logged_load
    sys.argv = ["generate_data.py", *cfg["argv"]]
    try:
        gen.main(gen.__doc__)
    finally:
        Path(cfg["psd_log"]).write_text(json.dumps({"shim": shim, "psd_files_loaded": psd_files}, indent=1))


# ----------------------------------------------------------------- segments
def standin_segments(seed: int, need_s: int, start_gps: int = O3A_START_GPS) -> list[tuple[int, int]]:
    """Stand-in coincident segments (see the module notes) holding ``need_s`` s in segments >= 7200 s."""
    import numpy as np

    rng = np.random.default_rng(seed)
    segs, t, usable = [], start_gps, 0
    while usable < need_s:
        t += int(np.rint(np.exp(rng.uniform(np.log(60.0), np.log(7200.0)))))
        dur = int(np.rint(np.exp(rng.uniform(np.log(1800.0), np.log(36000.0)))))
        segs.append((t, t + dur))
        if dur >= MIN_SEGMENT_S:
            usable += dur
        t += dur
    return segs


def write_segments_csv(path: Path, segs: list[tuple[int, int]]) -> None:
    """The generator's format: a header row, then ``index,start,end`` (integer GPS s)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["", "start", "end"])
        for i, (a, b) in enumerate(segs):
            w.writerow([i, a, b])


def read_segments_csv(path: Path) -> list[tuple[int, int]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [(int(r[1]), int(r[2])) for r in rows if r]


# ----------------------------------------------------------------- provenance helpers
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def generator_commit(gen: Path, given: str | None) -> str | None:
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(gen), "rev-parse", "HEAD"], check=False,
                             capture_output=True, text=True, timeout=30)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def summarise_strain(path: Path) -> dict:
    """Segments per detector of a mock-data-layout file (GPS start, duration, sample rate)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as fh:
        for det in sorted(k for k in fh if isinstance(fh[k], h5py.Group)):
            segs = []
            for key, dset in fh[det].items():
                dt = float(dset.attrs["delta_t"])
                segs.append({"name": key, "start": float(dset.attrs["start_time"]),
                             "duration_s": len(dset) * dt, "sample_rate": round(1.0 / dt)})
            out[det] = sorted(segs, key=lambda s: s["start"])
        attrs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in fh.attrs.items()}
    return {"segments": out, "attrs": {k: (str(v) if isinstance(v, bytes) else v) for k, v in attrs.items()}}


def summarise_injections(path: Path, segments: list[dict]) -> dict:
    import h5py
    import numpy as np

    with h5py.File(path, "r") as fh:
        tc = np.asarray(fh["tc"][()], dtype=np.float64)
        cols = sorted(k for k in fh if isinstance(fh[k], h5py.Dataset))
        attrs = {k: str(v) for k, v in fh.attrs.items()}
        ranges = {k: [float(np.min(fh[k][()])), float(np.max(fh[k][()]))]
                  for k in ("mass1", "mass2", "mchirp", "chirp_distance", "distance") if k in fh}
    injected = sum(int(((tc >= s["start"] + INJECTION_PADDING_S)
                        & (tc <= s["start"] + s["duration_s"] - INJECTION_PADDING_S)).sum()) for s in segments)
    inside = sum(int(((tc >= s["start"]) & (tc < s["start"] + s["duration_s"])).sum()) for s in segments)
    return {"n_in_file": int(tc.size), "n_tc_inside_segments": inside,
            "n_injected": injected, "tc_range": [float(tc.min()), float(tc.max())] if tc.size else None,
            "columns": cols, "ranges": ranges, "attrs": attrs}


def write_injected_subset(src: Path, dst: Path, segments: list[dict]) -> int:
    """Copy of the injection table restricted to the injections the generator put into the data.

    ``pycbc_create_injections`` fills the whole extent of the segment list; the
    generator injects only ``tc`` in ``[start + 30 s, end - 30 s]`` of a data segment.
    Every column and root attribute is kept; returns the number of rows.
    """
    import h5py
    import numpy as np

    with h5py.File(src, "r") as fi:
        tc = np.asarray(fi["tc"][()], dtype=np.float64)
        keep = np.zeros(tc.size, dtype=bool)
        for s in segments:
            lo, hi = s["start"] + INJECTION_PADDING_S, s["start"] + s["duration_s"] - INJECTION_PADDING_S
            keep |= (tc >= lo) & (tc <= hi)
        with h5py.File(dst, "w") as fo:
            for key, dset in fi.items():
                if isinstance(dset, h5py.Dataset):
                    data = dset[()]
                    fo.create_dataset(key, data=data[keep] if data.shape[:1] == tc.shape else data)
            for key, value in fi.attrs.items():
                fo.attrs[key] = value
            fo.attrs["selected_from"] = str(src)
            fo.attrs["selection"] = (f"tc within [start + {INJECTION_PADDING_S} s, end - {INJECTION_PADDING_S} s] "
                                     "of a data segment (the injections generate_data.py made)")
    return int(keep.sum())


# ----------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, help="checkout of gwastro/ml-mock-data-challenge-1")
    ap.add_argument("--dataset", type=int, choices=[1, 2, 3], default=3)
    ap.add_argument("--duration", type=int, help="seconds of data (the generator's --duration)")
    ap.add_argument("--start-offset", type=int, default=0, help="the generator's --start-offset (s)")
    ap.add_argument("--seed", type=int, help="the generator's --seed (noise, PSD draws and injections)")
    ap.add_argument("--out", type=Path, help="output directory")
    ap.add_argument("--segments", type=Path, default=None,
                    help="the challenge's segments.csv; a seeded stand-in is written when omitted")
    ap.add_argument("--segments-seed", type=int, default=1, help="seed of the stand-in segment list")
    ap.add_argument("--generator-commit", default=None,
                    help="commit of the checkout, when it is not a git work tree (e.g. a git archive)")
    ap.add_argument("--generate-duration", type=int, default=3600,
                    help="the generator's --generate-duration (s of noise made at once)")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    ap.add_argument("--run-generator", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_generator:
        run_generator(args.run_generator)
        return
    for name in ("generator", "duration", "seed", "out"):
        if getattr(args, name) is None:
            ap.error(f"--{name} is required")
    gen = args.generator.resolve()
    if not (gen / "generate_data.py").is_file():
        ap.error(f"--generator {gen}: no generate_data.py there, expected a checkout of "
                 "gwastro/ml-mock-data-challenge-1")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    fg, bg, inj = out / "foreground.hdf", out / "background.hdf", out / "injections.hdf"
    existing = [p for p in (fg, bg, inj, out / "injections-in-data.hdf") if p.exists()]
    if existing and not args.force:
        ap.error(f"{', '.join(map(str, existing))} exist; pass --force to overwrite")
    for p in existing:
        p.unlink()

    seg_csv = out / "segments.csv"
    if args.segments is not None:
        segs = read_segments_csv(args.segments)
        if args.segments.resolve() != seg_csv:
            seg_csv.write_bytes(args.segments.read_bytes())
        seg_source = {"kind": "file", "path": str(args.segments.resolve()), "sha256": sha256(args.segments)}
    else:
        segs = standin_segments(args.segments_seed, args.start_offset + args.duration)
        write_segments_csv(seg_csv, segs)
        seg_source = {"kind": "stand-in", "seed": args.segments_seed, "start_gps": O3A_START_GPS,
                      "lengths_s": "log-uniform 1800-36000", "gaps_s": "log-uniform 60-7200",
                      "sha256": sha256(seg_csv)}

    gen_argv = ["--data-set", str(args.dataset), "--output-foreground-file", str(fg),
                "--output-background-file", str(bg), "--output-injection-file", str(inj),
                "--seed", str(args.seed), "--start-offset", str(args.start_offset),
                "--duration", str(args.duration), "--generate-duration", str(args.generate_duration),
                "--verbose"]
    if args.force:
        gen_argv.append("--force")
    psd_log = out / "psd-draws.json"
    cfg_path = out / "generator-config.json"
    cfg_path.write_text(json.dumps({"generator": str(gen), "segments": str(seg_csv), "argv": gen_argv,
                                    "psd_log": str(psd_log)}, indent=1))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-generator", str(cfg_path)]
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    print("running:", " ".join(cmd), "\n  generate_data.py", " ".join(gen_argv), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"generator failed with exit status {proc.returncode} after {wall:.0f} s")
    for p in (fg, bg, inj):
        if not p.is_file():
            sys.exit(f"generator finished but {p} is missing (pycbc_create_injections failed?)")

    import numpy as np
    import pycbc

    draws = json.loads(psd_log.read_text())
    fg_sum, bg_sum = summarise_strain(fg), summarise_strain(bg)
    dets = sorted(fg_sum["segments"])
    ref = fg_sum["segments"][dets[0]]
    psds = draws["psd_files_loaded"]
    for i, s in enumerate(ref):
        if len(psds) == len(ref) * len(dets):
            s["psd"] = {d: psds[i * len(dets) + j] for j, d in enumerate(dets)}
    total = sum(s["duration_s"] for s in ref)
    gaps = [ref[i + 1]["start"] - (ref[i]["start"] + ref[i]["duration_s"]) for i in range(len(ref) - 1)]
    noise_seeds = [int(x) for x in np.random.RandomState(seed=args.seed).randint(0, 2 ** 32, len(dets))]
    files = {"generate_data.py": sha256(gen / "generate_data.py"), "segments.py": sha256(gen / "segments.py"),
             f"ds{args.dataset}.ini": sha256(gen / f"ds{args.dataset}.ini")}
    psd_hash = hashlib.sha256()
    for p in sorted((gen / "psds").rglob("*.hdf")):
        psd_hash.update(p.relative_to(gen).as_posix().encode() + b"\0" + sha256(p).encode())
    files["psds/**/*.hdf (combined)"] = psd_hash.hexdigest()
    prov = {
        "what": f"MLGWSC-1 dataset {args.dataset} made with the official generate_data.py",
        "command": [sys.executable, *sys.argv] if argv is None else [sys.executable, __file__, *argv],
        "generator_command": ["generate_data.py", *gen_argv],
        "runner_command": cmd,
        "runtime_adaptations": [x for x in (draws["shim"],
                                            f"load_segments reads {seg_csv} (no download)",
                                            "load_frequencyseries wrapped to log PSD draws") if x],
        "generator": {"path": str(gen), "commit": generator_commit(gen, args.generator_commit),
                      "repository": "https://github.com/gwastro/ml-mock-data-challenge-1", "sha256": files},
        "environment": {"python": platform.python_version(), "pycbc": pycbc.__version__,
                        "numpy": np.__version__},
        "dataset": args.dataset,
        "seed": args.seed,
        "noise_seeds_per_detector": dict(zip(dets, noise_seeds)),
        "injection_seed": args.seed,
        "start_offset_s": args.start_offset,
        "duration_s": args.duration,
        "segments_source": seg_source,
        "segments_in_list": len(segs),
        "data": {"detectors": dets, "n_segments": len(ref), "total_duration_s": total,
                 "gps_start": ref[0]["start"], "gps_end": ref[-1]["start"] + ref[-1]["duration_s"],
                 "gaps_s": gaps, "segments": ref,
                 "background_same_segments": all(
                     [(a["start"], a["duration_s"]) for a in bg_sum["segments"][d]]
                     == [(b["start"], b["duration_s"]) for b in fg_sum["segments"][d]] for d in dets),
                 "foreground_attrs": fg_sum["attrs"]},
        "injections": summarise_injections(inj, ref),
        "files": {p.name: {"bytes": p.stat().st_size} for p in (fg, bg, inj, seg_csv)},
        "wall_time_s": round(wall, 1),
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    subset = out / "injections-in-data.hdf"
    prov["injections"]["subset_file"] = {"path": subset.name, "n": write_injected_subset(inj, subset, ref)}
    prov["files"][subset.name] = {"bytes": subset.stat().st_size}
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    print(f"done in {wall:.0f} s: {len(ref)} segments, {total:.0f} s, "
          f"{prov['injections']['n_injected']} injections; {out / 'provenance.json'}")


if __name__ == "__main__":
    main()
