"""Waveforms cut around the merger: the one generator training, the template bank and tests share.

:func:`one_waveform` is pycbc's ``get_td_waveform`` cut to ``[-before_s,
+after_s]`` around the merger with a half-Hann start taper (the training
bank's waveforms); :func:`template_waveform` is its face-on plus polarisation
with aligned spins, cut like a template.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEMPLATE_BEFORE_S", "TEMPLATE_AFTER_S", "one_waveform", "template_waveform"]

#: waveform cut of the templates (s before / after merger), as the training bank's
TEMPLATE_BEFORE_S, TEMPLATE_AFTER_S = 2.5, 0.5


def one_waveform(args) -> tuple[np.ndarray, np.ndarray]:
    """Plus/cross of one bank entry, cut to [-before_s, after_s] around the merger, start tapered."""
    from pycbc.waveform import get_td_waveform

    p, approximant, f_lower, rate, before_s, after_s = args
    hp, hc = get_td_waveform(
        approximant=approximant, mass1=p["mass1"], mass2=p["mass2"],
        spin1x=p["spin1x"], spin1y=p["spin1y"], spin1z=p["spin1z"],
        spin2x=p["spin2x"], spin2y=p["spin2y"], spin2z=p["spin2z"],
        distance=1.0, inclination=p["inclination"], coa_phase=p["coa_phase"],
        delta_t=1.0 / rate, f_lower=f_lower,
    )
    n_before, n_after = int(round(before_s * rate)), int(round(after_s * rate))
    out = np.zeros((2, n_before + n_after))
    i_merger = int(round(-float(hp.start_time) * rate))  # t = 0 is the merger in pycbc's convention
    for row, h in enumerate((hp.numpy(), hc.numpy())):
        lo = max(0, i_merger - n_before)
        hi = min(h.size, i_merger + n_after)
        out[row, n_before - (i_merger - lo):n_before + (hi - i_merger)] = h[lo:hi]
    # the cut starts mid-inspiral: a half-Hann taper over 0.25 s keeps it from ringing
    n_taper = int(0.25 * rate)
    first = int(np.flatnonzero(out[0] != 0)[0]) if np.any(out[0]) else 0
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_taper) / n_taper)
    out[:, first:first + n_taper] *= ramp[: out[:, first:first + n_taper].shape[1]]
    return out[0], out[1]


def template_waveform(args) -> np.ndarray:
    """Plus polarisation (face-on, phase 0) of one aligned-spin template, cut like a training waveform."""
    (m1, m2, s1z, s2z), approximant, f_lower_hz, rate = args
    p = {"mass1": m1, "mass2": m2, "spin1x": 0.0, "spin1y": 0.0, "spin1z": s1z,
         "spin2x": 0.0, "spin2y": 0.0, "spin2z": s2z, "inclination": 0.0, "coa_phase": 0.0}
    hp, _ = one_waveform((p, approximant, f_lower_hz, rate, TEMPLATE_BEFORE_S, TEMPLATE_AFTER_S))
    return hp
