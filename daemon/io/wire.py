"""ZeroMQ wire format of gwstream (see ``docs/wire.md``).

A frame message is multipart ``[topic, header, payload]``:

- topic: ``b"frame.<IFO>"``;
- header: UTF-8 JSON ``{"v", "ifo", "channel", "gps_ns", "sample_rate", "n",
  "dtype", "state", "seq"}``;
- payload: ``n * itemsize`` little-endian bytes, decoded zero-copy.

End of stream from a source is ``[b"eos.<IFO>", header]`` with ``{"v", "ifo",
"seq"}``. Aligned blocks from ingest to search are ``[b"block", header,
mask_0, data_0, mask_1, data_1, ...]`` (one mask/data pair per detector, in
the header's ``ifos`` order); a stretch with no data at all is
``[b"gap", header]`` and the end of the stream ``[b"eos", header]``.
No pickle anywhere: JSON headers and raw little-endian arrays only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from gwstream.daemon.errors import WireError
from gwstream.daemon.units import NS, samples_to_ns

__all__ = [
    "WIRE_VERSION",
    "Frame",
    "Block",
    "encode_frame",
    "decode_frame",
    "encode_eos",
    "decode_source_message",
    "encode_block",
    "encode_control",
    "decode_block_message",
    "DTYPES",
]

WIRE_VERSION = 1
DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
_FRAME_FIELDS = {
    "v": int, "ifo": str, "channel": str, "gps_ns": int, "sample_rate": int,
    "n": int, "dtype": str, "state": (int, list), "seq": int,
}
#: largest sample rate we accept on the wire (LIGO's native rate is 16384 Hz)
MAX_SAMPLE_RATE = 65536


@dataclass(frozen=True)
class Frame:
    """One detector's frame: contiguous samples starting at ``gps_ns``.

    Attributes
    ----------
    ifo : str
        Detector, e.g. ``"H1"``.
    channel : str
        Strain channel, e.g. ``"H1:GDS-CALIB_STRAIN"``.
    gps_ns : int
        GPS time of the first sample, integer nanoseconds.
    sample_rate : int
        Samples per second (Hz).
    data : numpy.ndarray
        Samples, shape ``(n,)``, float32 or float64 (read-only view of the payload).
    state : tuple of int
        State-vector words spanning the frame evenly (one word: the whole frame).
    seq : int
        Per-source message counter.
    """

    ifo: str
    channel: str
    gps_ns: int
    sample_rate: int
    data: np.ndarray = field(repr=False)
    state: tuple[int, ...] = (0,)
    seq: int = 0

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration_ns(self) -> int:
        """Duration in ns, exact when ``n * 1e9`` is a multiple of the rate."""
        return samples_to_ns(self.n, self.sample_rate)

    @property
    def end_ns(self) -> int:
        return self.gps_ns + self.duration_ns

    def state_per_sample(self) -> np.ndarray:
        """State word of every sample, shape ``(n,)`` uint32."""
        words = np.asarray(self.state, dtype=np.uint32)
        return np.repeat(words, self.n // len(words))


def encode_frame(frame: Frame) -> list[bytes]:
    """Serialise a :class:`Frame` to the multipart message ``[topic, header, payload]``."""
    data = np.ascontiguousarray(frame.data)
    dtype = data.dtype.newbyteorder("<").str if data.dtype.byteorder in "=|" else data.dtype.str
    if dtype not in DTYPES:
        raise WireError("bad_dtype", f"dtype {data.dtype} not one of {sorted(DTYPES)}")
    data = data.astype(DTYPES[dtype], copy=False)
    header = {
        "v": WIRE_VERSION,
        "ifo": frame.ifo,
        "channel": frame.channel,
        "gps_ns": int(frame.gps_ns),
        "sample_rate": int(frame.sample_rate),
        "n": int(data.shape[0]),
        "dtype": dtype,
        "state": int(frame.state[0]) if len(frame.state) == 1 else [int(s) for s in frame.state],
        "seq": int(frame.seq),
    }
    return [f"frame.{frame.ifo}".encode(), json.dumps(header).encode(), data.tobytes()]


def encode_eos(ifo: str, seq: int) -> list[bytes]:
    """End-of-stream marker a source sends after its last frame of ``ifo``."""
    return [f"eos.{ifo}".encode(), json.dumps({"v": WIRE_VERSION, "ifo": ifo, "seq": int(seq)}).encode()]


def _parse_header(raw: bytes | memoryview) -> dict:
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError("bad_json", f"header is not UTF-8 JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise WireError("bad_json", f"header is a JSON {type(header).__name__}, expected an object")
    return header


def _check_version(header: dict) -> None:
    v = header.get("v")
    if type(v) is not int:
        raise WireError("missing_field" if v is None else "bad_type", f"'v' = {v!r}, expected integer {WIRE_VERSION}")
    if v != WIRE_VERSION:
        raise WireError("bad_version", f"wire version {v}, expected {WIRE_VERSION}")


def decode_source_message(parts: Sequence[bytes | memoryview], max_bytes: int = 8 * 2**20):
    """Decode a message from a source: a :class:`Frame`, or ``("eos", ifo, seq)``.

    Parameters
    ----------
    parts : sequence of bytes
        The multipart message as received.
    max_bytes : int
        Hard cap on the total message size; larger messages are rejected
        before anything is parsed.

    Raises
    ------
    WireError
        With ``reason`` one of ``oversize``, ``bad_parts``, ``bad_topic``,
        ``bad_json``, ``bad_version``, ``missing_field``, ``bad_type``,
        ``bad_value``, ``bad_dtype``, ``bad_sample_rate``, ``bad_length``,
        ``topic_mismatch``.
    """
    size = sum(len(p) for p in parts)
    if size > max_bytes:
        raise WireError("oversize", f"message of {size} bytes exceeds the cap of {max_bytes} bytes")
    if not parts:
        raise WireError("bad_parts", "empty message")
    topic = bytes(parts[0])
    if topic.startswith(b"eos."):
        if len(parts) != 2:
            raise WireError("bad_parts", f"eos message has {len(parts)} parts, expected 2")
        header = _parse_header(parts[1])
        _check_version(header)
        ifo, seq = header.get("ifo"), header.get("seq", 0)
        if not isinstance(ifo, str) or type(seq) is not int:
            raise WireError("bad_type", f"eos header ifo={ifo!r:.40} seq={seq!r:.40}, expected string and integer")
        if not 0 <= seq < 2**64:
            raise WireError("bad_value", f"eos seq = {seq!r:.40}, expected a uint64 counter")
        if topic != f"eos.{ifo}".encode():
            raise WireError("topic_mismatch", f"topic {topic!r} does not match ifo {ifo!r}")
        return ("eos", ifo, seq)
    if not topic.startswith(b"frame."):
        raise WireError("bad_topic", f"topic {topic[:64]!r}, expected b'frame.<IFO>' or b'eos.<IFO>'")
    if len(parts) != 3:
        raise WireError("bad_parts", f"frame message has {len(parts)} parts, expected 3 [topic, header, payload]")
    return decode_frame(parts)


def decode_frame(parts: Sequence[bytes | memoryview]) -> Frame:
    """Decode ``[topic, header, payload]`` into a :class:`Frame` (zero-copy payload).

    Non-finite samples are *not* rejected here: they are data, gated by ingest.
    """
    if len(parts) != 3:
        raise WireError("bad_parts", f"frame message has {len(parts)} parts, expected 3")
    topic, raw_header, payload = parts
    header = _parse_header(raw_header)
    _check_version(header)
    for name, tp in _FRAME_FIELDS.items():
        if name not in header:
            raise WireError("missing_field", f"header lacks {name!r}")
        value = header[name]
        if isinstance(value, bool) or not isinstance(value, tp):
            raise WireError("bad_type", f"{name!r} = {value!r:.80}, expected {getattr(tp, '__name__', 'int or list')}")
    ifo = header["ifo"]
    if bytes(topic) != f"frame.{ifo}".encode():
        raise WireError("topic_mismatch", f"topic {bytes(topic)[:64]!r} does not match ifo {ifo!r:.16}")
    channel = header["channel"]
    if not channel.startswith(f"{ifo}:"):
        raise WireError("bad_value", f"channel {channel!r:.80} does not start with '{ifo}:'")
    dtype = DTYPES.get(header["dtype"])
    if dtype is None:
        raise WireError("bad_dtype", f"dtype {header['dtype']!r:.16}, expected one of {sorted(DTYPES)}")
    rate, n, gps_ns, seq = header["sample_rate"], header["n"], header["gps_ns"], header["seq"]
    if not 0 < rate <= MAX_SAMPLE_RATE:
        raise WireError("bad_sample_rate", f"sample_rate {rate} Hz, expected 1..{MAX_SAMPLE_RATE} Hz")
    if n <= 0:
        raise WireError("bad_value", f"n = {n}, expected a positive sample count")
    if (n * NS) % rate:
        raise WireError("bad_value", f"n = {n} samples at {rate} Hz is not a whole number of nanoseconds")
    if not 0 <= gps_ns < 2**62:
        raise WireError("bad_value", f"gps_ns = {gps_ns}, expected a non-negative int64")
    if not 0 <= seq < 2**64:
        raise WireError("bad_value", f"seq = {seq!r:.40}, expected a uint64 counter")
    state = header["state"]
    words = (state,) if isinstance(state, int) else tuple(state)
    if not words or any(isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < 2**32 for w in words):
        raise WireError("bad_value", f"state {state!r:.80}, expected a uint32 word or a non-empty list of them")
    if n % len(words):
        raise WireError("bad_value", f"{len(words)} state words do not divide n = {n} samples evenly")
    if len(payload) != n * dtype.itemsize:
        raise WireError(
            "bad_length", f"payload of {len(payload)} bytes, expected n * itemsize = {n} * {dtype.itemsize}"
        )
    data = np.frombuffer(payload, dtype=dtype)
    return Frame(ifo=ifo, channel=channel, gps_ns=gps_ns, sample_rate=rate, data=data, state=words, seq=seq)


# -------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class Block:
    """Aligned multi-detector data from ingest, with a per-sample validity mask.

    Attributes
    ----------
    gps_ns : int
        GPS time of the first sample (ns).
    duration_ns : int
        Block duration (ns).
    ifos : tuple of str
        Detector order of ``data`` and ``valid``.
    sample_rates : tuple of int
        Sample rate of each detector (Hz).
    data : tuple of numpy.ndarray
        float64 samples per detector; invalid samples are zero.
    valid : tuple of numpy.ndarray
        bool per sample: present, finite and analysis-ready.
    seq : int
        Block counter.
    complete_unix_ns : int or None
        Wall-clock time (Unix ns) at which ingest completed the block.
    counters : dict or None
        Ingest's counters when it sent the block (frames, rejections by reason).
    """

    gps_ns: int
    duration_ns: int
    ifos: tuple[str, ...]
    sample_rates: tuple[int, ...]
    data: tuple[np.ndarray, ...] = field(repr=False)
    valid: tuple[np.ndarray, ...] = field(repr=False)
    seq: int = 0
    complete_unix_ns: int | None = None
    counters: dict | None = field(default=None, repr=False, compare=False)

    @property
    def end_ns(self) -> int:
        return self.gps_ns + self.duration_ns


def encode_block(block: Block, complete_unix_ns: int | None = None, counters: dict | None = None) -> list[bytes]:
    """``[b"block", json, valid, data, ...]``; ``complete_unix_ns`` stamps when ingest completed the block
    (wall clock, for the alert latency figures), ``counters`` carries ingest's counters (for metrics)."""
    header = {
        "v": WIRE_VERSION, "gps_ns": block.gps_ns, "duration_ns": block.duration_ns,
        "ifos": list(block.ifos), "sample_rates": list(block.sample_rates), "seq": block.seq,
    }
    if complete_unix_ns is not None:
        header["complete_unix_ns"] = int(complete_unix_ns)
    if counters:
        header["counters"] = {str(k): int(v) for k, v in counters.items()}
    parts = [b"block", json.dumps(header).encode()]
    for data, valid in zip(block.data, block.valid):
        parts.append(np.ascontiguousarray(valid, dtype=np.uint8).tobytes())
        parts.append(np.ascontiguousarray(data, dtype="<f8").tobytes())
    return parts


def encode_control(kind: str, header: dict) -> list[bytes]:
    """``[b"gap", json]`` or ``[b"eos", json]`` on the blocks stream."""
    return [kind.encode(), json.dumps({"v": WIRE_VERSION, **header}).encode()]


def decode_block_message(parts: Sequence[bytes | memoryview]):
    """Decode a message of the blocks stream: ``("block", Block)``, ``("gap", dict)`` or ``("eos", dict)``."""
    kind = bytes(parts[0]).decode("ascii", "replace")
    header = _parse_header(parts[1])
    _check_version(header)
    if kind in ("gap", "eos"):
        return kind, header
    if kind != "block":
        raise WireError("bad_topic", f"blocks stream topic {kind!r}, expected block, gap or eos")
    ifos = tuple(header["ifos"])
    if len(parts) != 2 + 2 * len(ifos):
        raise WireError("bad_parts", f"block with {len(ifos)} detectors has {len(parts)} parts")
    data, valid = [], []
    for i in range(len(ifos)):
        valid.append(np.frombuffer(parts[2 + 2 * i], dtype=np.uint8).view(bool))
        data.append(np.frombuffer(parts[3 + 2 * i], dtype="<f8"))
    block = Block(
        gps_ns=header["gps_ns"], duration_ns=header["duration_ns"], ifos=ifos,
        sample_rates=tuple(header["sample_rates"]), data=tuple(data), valid=tuple(valid), seq=header["seq"],
        complete_unix_ns=header.get("complete_unix_ns"), counters=header.get("counters"),
    )
    return "block", block
