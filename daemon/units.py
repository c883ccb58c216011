"""Time and sample units: the one definition of nanoseconds per second and of GPS <-> sample arithmetic.

Times inside gwstream are integer GPS nanoseconds (``gps_ns``); sample counts
are integers at a stated rate. Every conversion between the two goes through
this module, in exact integer arithmetic, so two stages that convert the same
sample index always agree on its time (float seconds appear only at the
edges: logs, archives, alerts).
"""

from __future__ import annotations

__all__ = ["NS", "samples_to_ns", "ns_to_samples", "sample_time_ns", "seconds_to_ns"]

#: nanoseconds per second
NS = 1_000_000_000


def samples_to_ns(n_samples: int, rate_hz: int) -> int:
    """Duration of ``n_samples`` at ``rate_hz`` in ns, rounded down (exact when the rate divides 1e9 * n)."""
    return int(n_samples) * NS // int(rate_hz)


def sample_time_ns(index: int, rate_hz: int) -> int:
    """Offset in ns of sample ``index`` from sample 0 at ``rate_hz``, without overflow for large indices.

    Equals :func:`samples_to_ns` for any index, computed as whole seconds plus a
    remainder so the intermediate product stays small.
    """
    index, rate_hz = int(index), int(rate_hz)
    return (index // rate_hz) * NS + (index % rate_hz) * NS // rate_hz


def ns_to_samples(duration_ns: int, rate_hz: int) -> int:
    """Whole samples at ``rate_hz`` in ``duration_ns`` (rounded down)."""
    return int(duration_ns) * int(rate_hz) // NS


def seconds_to_ns(seconds: float) -> int:
    """``seconds`` as integer ns, rounded to the nearest ns (config values and float GPS at the edges)."""
    return int(round(float(seconds) * NS))
