"""``gwstream evaluate``: how sensitive is a search? Found injections and sensitive distance versus FAR.

Inputs are what ``gwstream simulate`` and ``gwstream search`` write: an
injection file, the trigger archive of the data with those injections (the
foreground) and, for the background, either the trigger archive of a
separate noise-only run or the time-slid background a search of it wrote
(``--background-out``). Each trigger of the foreground gets

    FAR = (n_background(stat >= stat) + 1) / T_background,

with ``T_background`` the background's live time (zero-lag, or summed over slides). An injection
is *found* at threshold ``f`` when a foreground trigger lies within that
trigger's ``var`` of the injection's ``tc`` (the loudest such trigger counts)
and its FAR is ``<= f``. Injections whose ``tc`` lies outside the
foreground's analysed segments (warm-up, gaps) are left out and counted.

Sensitive volume, for injections drawn uniform in volume of *chirp*
distance::

    V = (4 pi / 3) d_max^3 * sum_found (Mc / Mc_max)^(5/2) / N

(``d_max`` the largest injected luminosity distance, ``Mc_max`` the largest
injected chirp mass); for injections uniform in volume of luminosity distance
``V = (4 pi / 3) d_max^3 * found / N``; for injections uniform in distance
``V = 4 pi d_max * sum_found d^2 / N``. Sensitive distance ``(3 V / 4 pi)^(1/3)``,
with the binomial (or weighted) standard error of ``V`` propagated.

Glitches (``--glitches``, the glitch file ``gwstream simulate --glitches`` writes) add a
``glitch`` section to ``summary.json`` (:func:`glitch_summary`): the number of glitches per
detector and kind (all, and those centred inside the foreground's analysed segments), and the
foreground triggers that coincide with a glitch. A trigger at ``t`` with ``var`` coincides with a
glitch centred at ``t_g`` of duration ``d`` (in either detector) when
``|t - t_g| <= var + d / 2``; it coincides with an injection when ``|t - tc| <= var`` (the
rule injections are found by), which tells a signal on top of a glitch apart from a glitch
alone. Per kind (a trigger near glitches of two kinds counts under both) and for any kind:
how many triggers, how many of them also coincide with an injection, their FARs (per day,
sorted, and min/median/max) and how many have FAR <= 1/day and <= 1/month (30 days), in all
and without an injection (false alarms a glitch caused).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
from gwstream.daemon.errors import FrameFileError
from gwstream.daemon.io.archive import read_triggers
from gwstream.daemon.io.framefiles import GLITCH_KINDS, read_glitch_file, read_injection_file
from gwstream.daemon.sim.injections import chirp_mass
from gwstream.daemon.stream.background import Background, far_hz

__all__ = ["match_injections", "far_from_background", "sensitive_volume", "glitch_summary", "run_evaluate"]

log = logging.getLogger(__name__)
DAY_S = 86400.0
MONTH_S = 30.0 * DAY_S
GLITCH_RULE = "|t_trigger - t_glitch| <= var + duration_s / 2 (glitch in either detector); " \
              "with an injection: |t_trigger - tc| <= var"


def match_injections(tc: np.ndarray, time: np.ndarray, stat: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Index of the loudest trigger within its ``var`` of each ``tc`` (-1 when none)."""
    tc = np.asarray(tc, dtype=np.float64)
    order = np.argsort(time)
    t_sorted = np.asarray(time, dtype=np.float64)[order]
    vmax = float(np.max(var)) if len(var) else 0.0
    out = np.full(tc.size, -1, dtype=np.int64)
    for i, t in enumerate(tc):
        lo = np.searchsorted(t_sorted, t - vmax, side="left")
        hi = np.searchsorted(t_sorted, t + vmax, side="right")
        cand = order[lo:hi]
        cand = cand[np.abs(time[cand] - t) <= var[cand]]
        if cand.size:
            out[i] = cand[np.argmax(stat[cand])]
    return out


def far_from_background(stat: np.ndarray, background_stat: np.ndarray, livetime_s: float) -> np.ndarray:
    """FAR in Hz of each ``stat`` against the full list of background statistics ``background_stat``.

    The formula is :func:`gwstream.daemon.stream.background.far_hz` (``(n >= stat + 1) / T``),
    with the exact count; a :class:`~gwstream.daemon.stream.background.Background` store counts
    its own way (exact over its loudest entries) and applies the same formula.
    """
    if not livetime_s > 0:
        raise ValueError(f"background live time {livetime_s!r} s, expected > 0")
    bg = np.sort(np.asarray(background_stat, dtype=np.float64))
    n = bg.size - np.searchsorted(bg, np.asarray(stat, dtype=np.float64), side="left")
    return far_hz(n, livetime_s)


def sensitive_volume(found: np.ndarray, inj: dict, distribution: str, d_max: float | None = None):
    """``(V, sigma_V)`` in Mpc^3 for a found mask over the injections ``inj`` (see the module notes)."""
    found = np.asarray(found, dtype=bool)
    n = found.size
    if n == 0:
        return 0.0, 0.0
    dist = np.asarray(inj["distance"], dtype=np.float64)
    d_max = float(d_max if d_max is not None else dist.max())
    v0 = 4.0 * np.pi / 3.0 * d_max ** 3
    if distribution == "chirp_uniform_volume":
        mc = inj["mchirp"] if "mchirp" in inj else chirp_mass(inj["mass1"], inj["mass2"])
        w = (np.asarray(mc, dtype=np.float64) / np.max(mc)) ** 2.5
    elif distribution == "uniform_volume":
        w = np.ones(n)
    elif distribution == "uniform":
        w = 3.0 * dist ** 2 / d_max ** 2  # V = 4 pi d_max sum d^2 / N = v0 * sum(3 d^2 / d_max^2) / N
    else:
        raise ValueError(f"distance distribution {distribution!r}: expected chirp_uniform_volume, uniform_volume "
                         "or uniform (injections drawn at a target SNR have no sensitive volume)")
    x = np.where(found, w, 0.0)
    v = v0 * x.sum() / n
    sigma = v0 * np.sqrt(max(0.0, (x ** 2).mean() - x.mean() ** 2) / n)
    return float(v), float(sigma)


def _distance(v):
    return float((3.0 * v / (4.0 * np.pi)) ** (1.0 / 3.0))


def _near_injection(time: np.ndarray, var: np.ndarray, tc: np.ndarray) -> np.ndarray:
    """Whether each trigger lies within its ``var`` of some injection ``tc``."""
    time = np.asarray(time, dtype=np.float64)
    tc = np.sort(np.asarray(tc, dtype=np.float64))
    if not tc.size or not time.size:
        return np.zeros(time.size, dtype=bool)
    k = np.searchsorted(tc, time)
    before, after = tc[np.clip(k - 1, 0, tc.size - 1)], tc[np.clip(k, 0, tc.size - 1)]
    nearest = np.minimum(np.abs(time - before), np.abs(time - after))
    return nearest <= np.asarray(var, dtype=np.float64)


def _near_glitch(time: np.ndarray, var: np.ndarray, g_time: np.ndarray, g_duration: np.ndarray) -> np.ndarray:
    """Whether each trigger lies within ``var + duration / 2`` of some glitch."""
    time = np.asarray(time, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    out = np.zeros(time.size, dtype=bool)
    if not time.size:
        return out
    order = np.argsort(time)
    t_sorted = time[order]
    vmax = float(var.max())
    for tg, dg in zip(np.asarray(g_time, dtype=np.float64), np.asarray(g_duration, dtype=np.float64)):
        lo = np.searchsorted(t_sorted, tg - vmax - dg / 2, side="left")
        hi = np.searchsorted(t_sorted, tg + vmax + dg / 2, side="right")
        cand = order[lo:hi]
        out[cand[np.abs(time[cand] - tg) <= var[cand] + dg / 2]] = True
    return out


def _far_entry(sel: np.ndarray, far_hz: np.ndarray, with_inj: np.ndarray) -> dict:
    f_day = np.sort(far_hz[sel] * DAY_S)
    alone = sel & ~with_inj
    return {
        "n_triggers": int(sel.sum()),
        "n_with_injection": int((sel & with_inj).sum()),
        "n_without_injection": int(alone.sum()),
        "far_per_day": [float(x) for x in f_day],
        "far_per_day_quantiles": ({"min": float(f_day[0]), "median": float(np.median(f_day)), "max": float(f_day[-1])}
                                  if f_day.size else None),
        "n_far_le_1_per_day": int((sel & (far_hz <= 1.0 / DAY_S)).sum()),
        "n_far_le_1_per_month": int((sel & (far_hz <= 1.0 / MONTH_S)).sum()),
        "n_far_le_1_per_day_without_injection": int((alone & (far_hz <= 1.0 / DAY_S)).sum()),
        "n_far_le_1_per_month_without_injection": int((alone & (far_hz <= 1.0 / MONTH_S)).sum()),
    }


def glitch_summary(glitches: dict, ifos, time: np.ndarray, var: np.ndarray, far_hz: np.ndarray,
                   injection_tc: np.ndarray, segments: np.ndarray | None = None) -> dict:
    """The ``glitch`` section of ``summary.json`` (see the module notes).

    Parameters
    ----------
    glitches : dict
        Glitch table (:func:`~gwstream.daemon.io.framefiles.read_glitch_file`).
    ifos : sequence of str
        Detectors to count glitches in (each gets every kind, zeros included).
    time, var, far_hz : numpy.ndarray
        Foreground triggers: GPS time (s), ``var`` (s) and FAR (Hz).
    injection_tc : numpy.ndarray
        Injection merger times, GPS s.
    segments : numpy.ndarray or None
        The foreground's analysed segments (GPS s, ``(n, 2)``); None counts every glitch as analysed.
    """
    time = np.asarray(time, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    far_hz = np.asarray(far_hz, dtype=np.float64)
    g_time = np.asarray(glitches["time"], dtype=np.float64)
    g_kind, g_ifo = np.asarray(glitches["kind"]), np.asarray(glitches["ifo"])
    inside = _inside(g_time, segments)
    ifos = list(dict.fromkeys([*ifos, *sorted(set(g_ifo))]))
    counts = {ifo: {k: int(np.sum((g_ifo == ifo) & (g_kind == k))) for k in GLITCH_KINDS} for ifo in ifos}
    analysed = {ifo: {k: int(np.sum((g_ifo == ifo) & (g_kind == k) & inside)) for k in GLITCH_KINDS} for ifo in ifos}
    with_inj = _near_injection(time, var, injection_tc)
    near = {k: _near_glitch(time, var, g_time[g_kind == k], np.asarray(glitches["duration_s"])[g_kind == k])
            for k in GLITCH_KINDS}
    near_any = np.logical_or.reduce([near[k] for k in GLITCH_KINDS]) if time.size else np.zeros(0, dtype=bool)
    coincident = {"any": _far_entry(near_any, far_hz, with_inj)}
    coincident.update({k: _far_entry(near[k], far_hz, with_inj) for k in GLITCH_KINDS})
    return {
        "rule": GLITCH_RULE,
        "n_glitches": counts,
        "n_glitches_analysed": analysed,
        "n_foreground_triggers": int(time.size),
        "coincident": coincident,
    }


def _inside(t: np.ndarray, segments: np.ndarray | None) -> np.ndarray:
    if segments is None or len(segments) == 0:
        return np.ones(t.size, dtype=bool)
    seg = np.asarray(segments, dtype=np.float64)
    seg = seg[np.argsort(seg[:, 0])]
    k = np.searchsorted(seg[:, 0], t, side="right") - 1
    return (k >= 0) & (t < seg[np.clip(k, 0, None), 1])


def run_evaluate(injections: str | Path, foreground: str | Path, background: str | Path, out: str | Path,
                 *, far_per_day=(1.0, 10.0, 100.0), distribution: str | None = None,
                 glitches: str | Path | None = None) -> dict:
    """Found fraction and sensitive distance versus FAR; writes ``summary.json`` and PNG plots under ``out``.

    With ``glitches`` (a glitch file), ``summary.json`` gains the ``glitch`` section
    (:func:`glitch_summary`).
    """
    out = Path(out)
    inj = read_injection_file(injections)
    glitch_table = read_glitch_file(glitches) if glitches is not None else None
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(injections, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
    distribution = distribution or str(attrs.get("distance", "chirp_uniform_volume"))
    fg, fg_attrs = read_triggers(foreground)
    with h5py.File(background, "r") if Path(background).is_file() else _nofile(background) as f:
        is_store = "background" in f
    if is_store:  # a time-slid background (gwstream search --background-out)
        store = Background.load(background)
        t_bg, n_bg, bg_model = store.livetime_s, store.n_triggers, store.meta.get("model_sha256")
    else:  # zero-lag triggers of a noise-only search
        bg, bg_attrs = read_triggers(background)
        t_bg, n_bg, bg_model = float(bg_attrs.get("livetime_s", 0.0)), int(bg["stat"].size), \
            bg_attrs.get("model_sha256")
    if not t_bg > 0:
        raise FrameFileError(f"{background}: no analysed live time (attribute livetime_s); is it a search output?")
    tc = np.asarray(inj["tc"], dtype=np.float64)
    inside = _inside(tc, fg_attrs.get("segments"))
    sel = {k: np.asarray(v)[inside] for k, v in inj.items()}
    if not fg["stat"].size:
        far = np.zeros(0)
    elif is_store:
        far = np.asarray(store.far(fg["stat"])[0], dtype=np.float64)
    else:
        far = far_from_background(fg["stat"], bg["stat"], t_bg)
    idx = match_injections(sel["tc"], fg["time"], fg["stat"], fg["var"])
    inj_far = np.where(idx >= 0, far[np.clip(idx, 0, None)] if far.size else np.inf, np.inf)
    inj_stat = np.where(idx >= 0, fg["stat"][np.clip(idx, 0, None)] if fg["stat"].size else -np.inf, -np.inf)
    d_max = float(np.max(inj["distance"])) if "distance" in inj and len(inj["distance"]) else None
    grid = np.logspace(-2, 4, 61)  # FAR per day
    curve = []
    has_volume = distribution != "snr" and d_max is not None
    for f_day in grid:
        found = inj_far <= f_day / DAY_S
        row = {"far_per_day": float(f_day), "found_fraction": float(found.mean()) if found.size else 0.0}
        if has_volume:
            v, s = sensitive_volume(found, sel, distribution, d_max)
            row.update(volume_mpc3=v, volume_sigma_mpc3=s, distance_mpc=_distance(v))
        curve.append(row)
    table = {}
    for f_day in far_per_day:
        found = inj_far <= f_day / DAY_S
        entry = {"found": int(found.sum()), "found_fraction": float(found.mean()) if found.size else 0.0}
        if has_volume:
            v, s = sensitive_volume(found, sel, distribution, d_max)
            entry.update(volume_mpc3=v, volume_sigma_mpc3=s, distance_mpc=_distance(v),
                         distance_sigma_mpc=_distance(v + s) - _distance(v))
        table[f"{f_day:g}"] = entry
    summary = {
        "out": str(out), "injections": str(injections), "foreground": str(foreground),
        "background": str(background), "distance_distribution": distribution, "d_max_mpc": d_max,
        "n_injections": int(tc.size), "n_analysed": int(inside.sum()), "n_outside_segments": int((~inside).sum()),
        "n_matched": int((idx >= 0).sum()), "foreground_livetime_s": float(fg_attrs.get("livetime_s", 0.0)),
        "background_livetime_s": t_bg, "n_background_triggers": n_bg,
        "background_kind": "time slides" if is_store else "zero-lag triggers",
        "sensitive_distance_mpc": {k: v.get("distance_mpc") for k, v in table.items()},
        "at_far_per_day": table, "curve": curve,
        "foreground_model": fg_attrs.get("model_sha256"), "background_model": bg_model,
    }
    if glitch_table is not None:
        with h5py.File(glitches, "r") as f:
            g_ifos = [i for i in str(f.attrs.get("ifos", "")).split(",") if i]
        summary["glitch"] = {"file": str(glitches), **glitch_summary(
            glitch_table, g_ifos, fg["time"], fg["var"], far, inj["tc"], fg_attrs.get("segments"))}
        log.info("evaluate: %d glitches, %d foreground triggers on a glitch (%d without an injection at FAR <= 1/day)",
                 len(glitch_table["time"]), summary["glitch"]["coincident"]["any"]["n_triggers"],
                 summary["glitch"]["coincident"]["any"]["n_far_le_1_per_day_without_injection"])
    if summary["foreground_model"] != summary["background_model"]:
        log.warning("foreground and background were searched with different models (%s, %s)",
                    summary["foreground_model"], summary["background_model"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    np.savetxt(out / "injections.txt", np.column_stack([sel["tc"], inj_stat, inj_far * DAY_S]),
               header="tc stat far_per_day (inf = missed)")
    _plots(out, curve, sel, inj_far, fg, far, has_volume)
    log.info("evaluate: %d injections (%d analysed), found at 1/day: %s", tc.size, inside.sum(),
             table.get("1", {}).get("found"))
    return summary


def _nofile(path):
    raise FrameFileError(f"{path}: no such background file")


def _plots(out: Path, curve, sel, inj_far, fg, far, has_volume) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [c["far_per_day"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(x, [c["found_fraction"] for c in curve], color="C0")
    ax.set_xlabel("FAR threshold (per day)")
    ax.set_ylabel("found fraction")
    ax.set_title("ROC: found injections versus false-alarm rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)
    if has_volume:
        fig, ax = plt.subplots(figsize=(6, 4))
        d = np.array([c["distance_mpc"] for c in curve])
        ax.semilogx(x, d, color="C1")
        ax.set_xlabel("FAR threshold (per day)")
        ax.set_ylabel("sensitive distance (Mpc)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "sensitive_distance.png", dpi=120)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        mc = sel["mchirp"] if "mchirp" in sel else chirp_mass(sel["mass1"], sel["mass2"])
        found = inj_far <= 1.0 / DAY_S
        ax.scatter(mc[~found], sel["distance"][~found], s=8, c="C3", label="missed at 1/day")
        ax.scatter(mc[found], sel["distance"][found], s=8, c="C0", label="found at 1/day")
        ax.set_xlabel("chirp mass (M☉)")
        ax.set_ylabel("luminosity distance (Mpc)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "found_missed.png", dpi=120)
        plt.close(fig)
