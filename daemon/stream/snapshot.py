"""What the follow-up of a trigger needs, copied out of the search as soon as the data allow.

A trigger's template SNR series and sky map are computed away from the
search (in the follow-up worker, or after an offline search), from the
whitened data the search already made. :class:`WhitenedHistory` keeps the
last stretch of the whitened stream; :class:`TriggerSnapshot` is the copy of
one trigger's data with the PSDs and whitening filter that made it, and the
template the model's branch found. The SNR series reach past the merger, so
a snapshot is taken once the stream has reached ``after_s`` beyond it
(:class:`SnapshotQueue`): the first alert never waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gwstream.daemon.units import ns_to_samples, sample_time_ns

__all__ = ["TriggerSnapshot", "WhitenedHistory", "SnapshotQueue"]


@dataclass(frozen=True)
class TriggerSnapshot:
    """One trigger's whitened data and the conditioning that made it.

    Attributes
    ----------
    event_id : str
    gps_ns : int
        The trigger (merger) time (ns).
    ifos : tuple of str
    sample_rate_hz : int
    start_sample : int
        Absolute analysis-rate sample index of ``data[:, 0]``.
    data : numpy.ndarray
        float32 ``(n_ifo, n)``: the whitened stream (unit variance in Gaussian noise).
    bad : numpy.ndarray
        bool ``(n_ifo, n)``: samples whose whitening filter touched invalid input.
    psd_freqs : numpy.ndarray
        Frequencies (Hz) of ``psd``.
    psd : numpy.ndarray
        ``(n_ifo, n_freq)`` one-sided PSDs (strain^2/Hz) the stream was whitened with.
    taps : numpy.ndarray
        The whitening FIR (causal; ``phase`` says how it was designed).
    phase : str
        ``"minimum"`` or ``"linear"`` (the stream is labelled with the filter's delay removed).
    template_index : int or None
        The model's template-branch template at the trigger (None: no branch).
    template_snr : float or None
        Its two-detector SNR as the branch measured it (cut template, not capped).
    far : float
        The trigger's FAR (Hz) when it was ranked.
    stat : float
    """

    event_id: str
    gps_ns: int
    ifos: tuple
    sample_rate_hz: int
    start_sample: int
    data: np.ndarray
    bad: np.ndarray
    psd_freqs: np.ndarray
    psd: np.ndarray
    taps: np.ndarray
    phase: str
    template_index: int | None
    template_snr: float | None
    far: float
    stat: float

    @property
    def start_ns(self) -> int:
        """GPS ns of ``data[:, 0]``."""
        return sample_time_ns(self.start_sample, self.sample_rate_hz)

    @property
    def psds(self) -> dict:
        """``{ifo: (psd_freqs, psd)}``, as the coinc.xml writer takes them."""
        return {ifo: (self.psd_freqs, self.psd[k]) for k, ifo in enumerate(self.ifos)}

    @property
    def duration_s(self) -> float:
        return self.data.shape[1] / self.sample_rate_hz


class WhitenedHistory:
    """The last ``capacity_s`` of the whitened stream of every detector, by absolute sample index.

    Samples never written (before the first block, across a restart of the
    stream) read as bad.
    """

    def __init__(self, n_ifo: int, sample_rate_hz: int, capacity_s: float = 64.0):
        self.rate = int(sample_rate_hz)
        self.cap = int(round(capacity_s * self.rate))
        self._x = np.zeros((n_ifo, self.cap), np.float32)
        self._bad = np.ones((n_ifo, self.cap), bool)
        self._idx = np.full(self.cap, -1, np.int64)  # absolute sample held by each slot
        self.end = None  # one past the newest sample held

    def add(self, start: int, x: np.ndarray, bad: np.ndarray) -> None:
        """Append whitened samples ``x`` ``(n_ifo, m)`` starting at absolute sample ``start``."""
        m = x.shape[1]
        if not m:
            return
        if m > self.cap:
            start, x, bad = start + m - self.cap, x[:, -self.cap:], bad[:, -self.cap:]
            m = self.cap
        idx = np.arange(start, start + m)
        slot = idx % self.cap
        self._x[:, slot], self._bad[:, slot], self._idx[slot] = x, bad, idx
        self.end = start + m if self.end is None else max(self.end, start + m)

    def get(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``start .. stop - 1``: ``(data (n_ifo, n) float32, bad (n_ifo, n))``; bad where not held."""
        idx = np.arange(start, stop)
        slot = idx % self.cap
        held = self._idx[slot] == idx
        x = np.where(held, self._x[:, slot], 0.0).astype(np.float32)
        return x, self._bad[:, slot] | ~held


class SnapshotQueue:
    """Triggers waiting for the stream to reach ``after_s`` past their merger, then snapshotted.

    Parameters
    ----------
    history : WhitenedHistory
    before_s, after_s : float
        Data kept before / after the merger (``before_s`` covers the longest
        template, ``after_s`` the SNR series' reach, the whitening filter's
        ringing and the merger's uncertainty).
    """

    def __init__(self, history: WhitenedHistory, *, before_s: float = 12.0, after_s: float = 1.5):
        if before_s + after_s > history.cap / history.rate:
            raise ValueError(f"snapshot of {before_s} s + {after_s} s is longer than the whitened history "
                             f"({history.cap / history.rate} s)")
        self.history = history
        self.before = int(round(before_s * history.rate))
        self.after = int(round(after_s * history.rate))
        self._pending: list[tuple[int, dict]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def request(self, gps_ns: int, **fields) -> None:
        """Snapshot the data around ``gps_ns`` once they are in; ``fields`` are the other
        :class:`TriggerSnapshot` attributes (the conditioning, the template, the trigger's id and FAR)."""
        self._pending.append((ns_to_samples(gps_ns, self.history.rate), {"gps_ns": gps_ns, **fields}))

    def ready(self, *, final: bool = False) -> list[TriggerSnapshot]:
        """The snapshots whose data are in (all pending ones when ``final``: the stream ended)."""
        end = self.history.end
        out, keep = [], []
        for centre, fields in self._pending:
            if final or (end is not None and end >= centre + self.after):
                start = centre - self.before
                x, bad = self.history.get(start, centre + self.after)
                out.append(TriggerSnapshot(start_sample=start, data=x, bad=bad,
                                           sample_rate_hz=self.history.rate, **fields))
            else:
                keep.append((centre, fields))
        self._pending = keep
        return out

