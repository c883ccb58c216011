"""A clustered zero-lag trigger: what the ranking stage emits, the archive stores and alerts describe.

Its own module so that readers of archives and alerts (``gwstream replay``'s
parent process, ``gwstream listen``) need not import the ranking kernels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gwstream.daemon.units import NS

__all__ = ["Trigger", "TRIGGER_FIELDS"]


#: columns of a trigger archive, in order
TRIGGER_FIELDS = ("time", "stat", "var", "far", "ifar_years", "saturated", "window_gps_ns", "gps_ns")


@dataclass(frozen=True)
class Trigger:
    """One clustered zero-lag trigger.

    Attributes
    ----------
    gps_ns : int
        Trigger (merger) time (ns): the model's merger offset after the middle of the windows around
        the loudest whose statistic is within ``ranking.time_plateau`` of its (the loudest alone if 0);
        with a template branch, the H1 merger its best template finds in those windows when that
        template's network SNR reaches ``ranking.template_time_snr``.
    window_gps_ns : int
        Start of the loudest window (ns).
    stat : float
        Ranking statistic (the network's logit).
    var : float
        Timing tolerance (s): the merger lies within ``var`` of ``time``.
    far : float
        False-alarm rate (Hz); ``inf`` before any background live time.
    ifar_years : float
    saturated : bool
        Louder than every background trigger (``far`` is then an upper bound, ``1 / T_background``).
    """

    gps_ns: int
    window_gps_ns: int
    stat: float
    var: float
    far: float
    ifar_years: float
    saturated: bool

    @property
    def time(self) -> float:
        """Trigger time, GPS seconds (float, for display and archives)."""
        return self.gps_ns / NS

    def as_dict(self) -> dict:
        d = asdict(self)
        d["time"] = self.time
        return d
