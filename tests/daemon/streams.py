"""Scripted frame streams with a known answer, shared by the daemon tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from gwstream.daemon.io.wire import Frame, encode_eos, encode_frame
from gwstream.daemon.units import NS

RATE = 256  # Hz: small frames keep the scripted tests fast
T0 = 1_000_000_000  # GPS s


def frame_data(ifo: str, t: int) -> np.ndarray:
    """Unique, recognisable samples for (ifo, second)."""
    base = {"H1": 1.0, "L1": 2.0}.get(ifo, 9.0)
    return base * 1e3 + t + np.arange(RATE) / RATE


def make_frame(ifo: str, t: int, *, state=3, data=None, rate=RATE, dtype="<f8", seq=None) -> Frame:
    data = frame_data(ifo, t) if data is None else data
    return Frame(ifo, f"{ifo}:GDS-CALIB_STRAIN", (T0 + t) * NS, rate, np.asarray(data, dtype=dtype),
                 (state,), max(t, 0) if seq is None else seq)


@dataclass
class Script:
    """Messages to send (with a pause marker), and the answer the ingest must give."""

    messages: list = field(default_factory=list)  # multipart lists, or ("sleep", seconds)
    expected_valid: dict = field(default_factory=dict)  # (ifo, t) -> bool mask
    expected_data: dict = field(default_factory=dict)  # (ifo, t) -> array
    expected_counters: dict = field(default_factory=dict)
    n_blocks: int = 0


def messy_script() -> Script:
    """Ten seconds of H1/L1 frames, shuffled, with duplicates, a missing-then-late frame,
    malformed messages, a NaN burst, a frame outside analysis-ready state, a detector
    nobody configured and a frame from far in the past."""
    rng = np.random.default_rng(11)
    s = Script(n_blocks=10)
    good = []
    for t in range(10):
        for ifo in ("H1", "L1"):
            if (ifo, t) == ("L1", 6):
                continue  # missing until after the timeout
            if (ifo, t) == ("H1", 4):
                data = frame_data("H1", 4).copy()
                data[100:110] = np.nan
                good.append((t, make_frame(ifo, t, data=data)))
            elif (ifo, t) == ("L1", 8):
                good.append((t, make_frame(ifo, t, state=1)))  # HOFT_OK only: not analysis-ready
            else:
                good.append((t, make_frame(ifo, t)))
    # shuffle within a sliding 3-s window: out of order, but never beyond the buffer
    keys = [t + rng.uniform(0, 3) for t, _ in good]
    order = [good[i][1] for i in np.argsort(keys, kind="stable")]
    msgs = [encode_frame(f) for f in order]
    bad_json = [b"frame.H1", b"{not json", b"\0" * 8]
    wrong_len = encode_frame(make_frame("H1", 3))
    wrong_len[2] = wrong_len[2][:-8]
    wrong_rate = encode_frame(make_frame("H1", 20, rate=512, data=np.zeros(512)))
    virgo = encode_frame(make_frame("V1", 2))
    wrong_dtype = encode_frame(make_frame("L1", 21))
    hdr = json.loads(wrong_dtype[1])
    hdr["dtype"] = "<i8"
    wrong_dtype[1] = json.dumps(hdr).encode()
    dup = encode_frame(make_frame("H1", 2))
    insert = [(3, bad_json), (5, wrong_len), (7, wrong_rate), (9, virgo), (11, wrong_dtype), (30, dup)]
    for pos, m in sorted(insert, reverse=True):
        msgs.insert(pos, m)
    s.messages = msgs + [
        ("sleep", 1.5),  # the late timeout (1 s) passes: block 6 goes out without L1
        encode_frame(make_frame("L1", 6)),  # now late
        encode_frame(make_frame("H1", 9)),  # a duplicate of an emitted frame
        encode_frame(make_frame("H1", -1000)),  # GPS going backwards, far beyond the buffer
        encode_eos("H1", 10),
        encode_eos("L1", 10),
    ]
    for t in range(10):
        for ifo in ("H1", "L1"):
            data = frame_data(ifo, t).copy()
            valid = np.ones(RATE, bool)
            if (ifo, t) == ("H1", 4):
                valid[100:110] = False
            if (ifo, t) in (("L1", 6), ("L1", 8)):
                valid[:] = False
            data[~valid] = 0.0
            s.expected_data[ifo, t] = data
            s.expected_valid[ifo, t] = valid
    s.expected_counters = {
        "frames.H1": 10, "frames.L1": 9, "blocks": 10,
        "rejected.bad_json": 1, "rejected.bad_length": 1, "rejected.bad_sample_rate": 1,
        "rejected.unknown_ifo": 1, "rejected.bad_dtype": 1, "rejected.duplicate": 2,
        "rejected.late": 1, "rejected.gps_backwards": 1,
        "nonfinite_frames.H1": 1, "nonfinite_samples.H1": 10,
        "not_analysis_ready_samples.L1": RATE, "gap_samples.L1": RATE,
    }
    return s


def ingest_config_dict(**endpoints) -> dict:
    return {
        "endpoints": endpoints,
        "data": {"input_rate_hz": 0, "analysis_rate_hz": 128},
        "ingest": {"block_s": 1.0, "buffer_s": 8.0, "late_timeout_s": 1.0, "status_interval_s": 1.0},
        "psd": {"fftlength_s": 1.0, "psd_length_s": 4.0},
        "windows": {"window_s": 1.0, "stride_s": 0.125},
    }


def write_toml(path, data: dict) -> None:
    """Minimal TOML writer for test configs (tables of scalars and lists)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []

    def table(name, d):
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{name}.{k}", v)

    for name, d in data.items():
        table(name, d)
    path.write_text("\n".join(lines) + "\n")
