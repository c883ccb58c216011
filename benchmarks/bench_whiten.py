"""Whitening benchmark: gwstream kernels vs gwpy TimeSeries.whiten vs PyCBC, one hour, two detectors.

Plain script: ``python benchmarks/bench_whiten.py [--duration 3600] [--repeat 3]``.
One run times, on the same data (aLIGO design-PSD Gaussian noise, 2048 Hz,
H1 and L1 independent), three whitening paths at 1-s FIR length and a 20 Hz
high-pass, each in two forms:

- *full*: estimate the ASD (Welch, 4-s median, 50 % overlap) then whiten,
  which is what ``TimeSeries.whiten(fftlength, overlap)`` does;
- *filter*: whiten with a given ASD (the daemon's steady state).

Our kernels run in float32 (``precision="single"``: Welch segments, FFTs
and convolution; PSD scaling and filter design in float64) and in float64,
and as the daemon does, in 1-s chunks through ``convolve_stream``. Numba compilation is timed separately (first call)
and excluded from throughput (best of ``--repeat``). The outputs are
compared with gwpy's (rms of the difference in units of the unit-variance
whitened noise, 2 s from the edges) so the speed-up is at equal accuracy.
Writes ``benchmarks/results/whiten.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

FS = 2048
FDURATION_S = 1.0
HIGHPASS_HZ = 20.0
FFTLENGTH_S = 4.0


def coloured_noise(seed: int, n: int, channels: int) -> np.ndarray:
    """Gaussian noise with pycbc's aLIGOZeroDetHighPower PSD (flat below 10 Hz), by FFT colouring."""
    import pycbc.psd

    rng = np.random.default_rng(seed)
    f = np.fft.rfftfreq(n, 1.0 / FS)
    psd = np.asarray(pycbc.psd.aLIGOZeroDetHighPower(f.size, f[1], 10.0).numpy())
    psd[f < 10] = psd[f >= 10][0]
    out = np.empty((channels, n))
    for c in range(channels):
        spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * np.sqrt(psd * FS * n / 4)
        spec[0] = 0.0
        out[c] = np.fft.irfft(spec, n)
    return out


def best_of(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds of data per detector")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "whiten.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from gwpy.frequencyseries import FrequencySeries as GwpyFS
    from gwpy.timeseries import TimeSeries as GwpyTS
    from gwstream.kernels import psd as kpsd
    from gwstream.kernels import resample as kres
    from gwstream.kernels import whiten as kwh
    from gwstream.kernels import windows as kwin
    from pycbc.psd import interpolate, inverse_spectrum_truncation
    from pycbc.types import FrequencySeries as PycbcFS
    from pycbc.types import TimeSeries as PycbcTS

    n = int(args.duration * FS)
    x = coloured_noise(2024, n, 2)
    ifos = ("H1", "L1")
    n_taps = int(FDURATION_S * FS)

    # ---- Numba compile / first-call costs, reported apart from throughput
    t0 = time.perf_counter()
    kres.decimate_stream(np.zeros((2, 4096)), 8, kres.new_state(8, 2))
    kwin.slide(np.zeros((2, 4096)), 2048, 128)
    for precision in ("double", "single"):  # Welch's numba kernels, one signature per precision
        kpsd.welch(np.ones((2, 4 * FS)), FS, 1.0, precision=precision)
    compile_s = time.perf_counter() - t0

    # ---- one ASD for the "filter" rows (ours; gwpy's agrees to 1e-14, see tests)
    freqs, psd = kpsd.welch(x, FS, FFTLENGTH_S, 0.5, "median")

    # gwpy -----------------------------------------------------------------
    ts = [GwpyTS(x[c], sample_rate=FS) for c in range(2)]
    asd = [GwpyFS(np.sqrt(psd[c]), frequencies=freqs) for c in range(2)]

    def gwpy_full():
        return np.stack([t.whiten(FFTLENGTH_S, FFTLENGTH_S / 2, fduration=FDURATION_S, highpass=HIGHPASS_HZ).value
                         for t in ts])

    def gwpy_filter():
        return np.stack([t.whiten(asd=a, fduration=FDURATION_S, highpass=HIGHPASS_HZ).value for t, a in zip(ts, asd)])

    # PyCBC ----------------------------------------------------------------
    pts = [PycbcTS(x[c], delta_t=1.0 / FS) for c in range(2)]

    def pycbc_filter_with(psd_arr):
        out = []
        for c in range(2):
            p = interpolate(PycbcFS(psd_arr[c], delta_f=freqs[1]), pts[c].delta_f)
            p = inverse_spectrum_truncation(p, n_taps, low_frequency_cutoff=HIGHPASS_HZ, trunc_method="hann")
            out.append((pts[c].to_frequencyseries() / p**0.5).to_timeseries().numpy() * np.sqrt(2.0 / FS))
        return np.stack(out)

    def pycbc_full():
        ps = np.stack([pts[c].psd(FFTLENGTH_S, avg_method="median").numpy() for c in range(2)])
        return pycbc_filter_with(ps)

    # ours -----------------------------------------------------------------
    # design on a 256-s grid, Richardson-extrapolated (the daemon's kind of design, finer grid)
    def ours_full(precision="single"):
        f, p = kpsd.welch(x, FS, FFTLENGTH_S, 0.5, "median", precision=precision)
        return kwh.whiten(x, FS, f, p, FDURATION_S, HIGHPASS_HZ, design_length_s=256.0, precision=precision)

    def ours_filter(precision="single"):
        return kwh.whiten(x, FS, freqs, psd, FDURATION_S, HIGHPASS_HZ, design_length_s=256.0, precision=precision)

    def ours_stream_1s():
        taps = kwh.design_fir(FS, freqs, psd, FDURATION_S, HIGHPASS_HZ)  # daemon default design (64 s)
        hist = kwh.new_history(n_taps, 2)
        out = np.empty_like(x)
        for i in range(0, n, FS):
            out[:, i:i + FS], hist = kwh.convolve_stream(x[:, i:i + FS], taps, hist)
        la = kwh.lookahead_samples(n_taps)
        return np.concatenate([out[:, la:], np.zeros((2, la))], axis=1)  # aligned, last la samples unknown

    def ours_gwpy_exact():
        return kwh.whiten(x, FS, freqs, psd, FDURATION_S, HIGHPASS_HZ, design_length_s=n / FS, extrapolate=False)

    rows = {}
    cases = [
        ("gwpy TimeSeries.whiten (estimate ASD + whiten)", "full", gwpy_full),
        ("gwpy TimeSeries.whiten(asd=...)", "filter", gwpy_filter),
        ("pycbc psd + inverse_spectrum_truncation + FFT", "full", pycbc_full),
        ("pycbc inverse_spectrum_truncation + FFT (given PSD)", "filter", lambda: pycbc_filter_with(psd)),
        ("gwstream welch + whiten, float32 (estimate ASD + whiten)", "full", ours_full),
        ("gwstream welch + whiten, float64 (estimate ASD + whiten)", "full", lambda: ours_full("double")),
        ("gwstream whiten, float32 (given PSD, 256-s design)", "filter", ours_filter),
        ("gwstream whiten, float64 (given PSD, 256-s design)", "filter", lambda: ours_filter("double")),
        ("gwstream whiten, float64, gwpy-identical design", "filter", ours_gwpy_exact),
        ("gwstream streaming whiten, 1-s chunks (daemon)", "filter", ours_stream_1s),
    ]
    outputs = {}
    for name, kind, fn in cases:
        fn()  # warm-up call (imports, FFT plans, allocator)
        t, out = best_of(fn, args.repeat)
        rows[name] = {"kind": kind, "seconds": t, "x_real_time": 2 * args.duration / t}
        outputs[name] = np.asarray(out, dtype=np.float64)
    edge = 2 * FS
    ref_full = outputs[cases[0][0]][:, edge:-edge]
    ref_filter = outputs[cases[1][0]][:, edge:-edge]
    for name, kind, _ in cases:
        ref = ref_full if kind == "full" else ref_filter
        d = outputs[name][:, edge:-edge] - ref
        rows[name]["rms_diff_vs_gwpy"] = float(np.sqrt(np.mean(d**2)))
        rows[name]["max_abs_diff_vs_gwpy"] = float(np.max(np.abs(d)))
        rows[name]["std_whitened"] = float(np.std(outputs[name][:, edge:-edge]))
        base = rows[cases[0][0]]["seconds"] if kind == "full" else rows[cases[1][0]]["seconds"]
        rows[name]["speedup_vs_gwpy"] = base / rows[name]["seconds"]

    print(f"whitening benchmark: {args.duration:g} s x {len(ifos)} detectors at {FS} Hz, fduration {FDURATION_S} s, "
          f"highpass {HIGHPASS_HZ} Hz, best of {args.repeat}; {os.cpu_count()} cores")
    print(f"numba compile / first call (excluded below): {compile_s:.2f} s")
    hdr = f"{'path':58s} {'kind':6s} {'time s':>8s} {'x real':>8s} {'vs gwpy':>8s} {'rms diff':>9s} {'max diff':>9s} {'std':>6s}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        print(f"{name:58s} {r['kind']:6s} {r['seconds']:8.3f} {r['x_real_time']:8.0f} {r['speedup_vs_gwpy']:7.1f}x "
              f"{r['rms_diff_vs_gwpy']:9.2e} {r['max_abs_diff_vs_gwpy']:9.2e} {r['std_whitened']:6.3f}")
    result = {
        "benchmark": "whiten",
        "duration_s": args.duration, "detectors": list(ifos), "sample_rate_hz": FS,
        "fduration_s": FDURATION_S, "highpass_hz": HIGHPASS_HZ, "fftlength_s": FFTLENGTH_S,
        "repeat": args.repeat, "numba_compile_s": compile_s,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(), "python": platform.python_version()},
        "rows": rows,
        "notes": "rms/max diff: whitened output minus gwpy's (full rows vs gwpy full, filter rows vs gwpy "
                 "filter), 2 s from the edges, in units of the unit-variance whitened noise.",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
