"""Simulated detector data: coloured Gaussian noise plus BBH injections and glitches.

:class:`Simulator` produces strain for every detector of a
:class:`~gwstream.daemon.config.SimulateConfig`, chunk by chunk or by random
access, finite or endless; the strain of a seed is bit-identical however it is
chunked. Glitches and per-segment PSD variation (``[simulate.glitches]``,
:mod:`gwstream.daemon.sim.glitches`) are added when the configuration asks for
them. :func:`run_simulate` writes it to HDF5 (community mock-data layout)
or 1-s GWF frames, plus the injection and glitch files (``gwstream simulate``).

Examples
--------
>>> sim = Simulator(SimulateConfig(), seed=1, duration_s=128, injections=True)
>>> for gps, strain in sim.iter_chunks():
...     strain["H1"].shape
(131072,)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from gwstream.daemon.config import IFO_NAMES, SimulateConfig
from gwstream.daemon.errors import ConfigError
from gwstream.daemon.io.atomic import atomic_path
from gwstream.daemon.io.framefiles import (
    gwf_name,
    write_glitch_file,
    write_gwf_frame,
    write_hdf5_layout_attrs,
    write_injection_file,
)
from gwstream.daemon.settings import section_to_dict

from .glitches import GlitchInjector, SegmentedNoise, glitch_columns_empty
from .injections import InjectionProjector
from .noise import ColoredNoise, derived_seed, load_psd

__all__ = ["Simulator", "run_simulate", "STATE_RATE_HZ", "NOISE_FIR_S"]

logger = logging.getLogger(__name__)

#: sample rate of the state-vector channel, Hz (LIGO convention)
STATE_RATE_HZ = 16
#: colouring FIR length, s (PSD resolution 1/16 Hz)
NOISE_FIR_S = 16.0


class Simulator:
    """Noise plus injections plus glitches for every detector of ``cfg``.

    Times are seconds after ``cfg.start_gps``; sample 0 of every stream is
    ``cfg.start_gps``.

    Parameters
    ----------
    cfg : SimulateConfig
        Detectors, PSD, sample rate, injection distributions.
    seed : int
        Master seed, >= 0. Detector ``ifo``'s noise uses a seed derived from
        ``(seed, 0, IFO_NAMES.index(ifo))``, so it does not change when other
        detectors are added; injections use ``seed`` directly; glitches and
        the PSD-variation factors use seeds derived from ``(seed, 2, index)``
        and ``(seed, 3, index)``.
    duration_s : int or None
        Length of the data, s; None for an endless stream.
    injections : bool
        Add injections (drawn from ``cfg.injections``).
    noise : bool
        Add noise; ``False`` gives signal-only data (tests, SNR checks).
        Glitches are added when ``cfg.glitches`` has a rate > 0, whatever
        ``noise`` and ``injections`` say, after the noise and the injections.

    Attributes
    ----------
    sample_rate_hz : int
    ifos : tuple of str
    noise : dict of str to ColoredNoise or SegmentedNoise
        SegmentedNoise when ``cfg.glitches.psd_variation > 0``.
    projector : InjectionProjector or None
    glitcher : GlitchInjector or None
    """

    def __init__(
        self,
        cfg: SimulateConfig,
        *,
        seed: int,
        duration_s: int | None,
        injections: bool,
        noise: bool = True,
    ):
        if int(seed) != seed or seed < 0:
            raise ConfigError("seed", seed, "a non-negative integer")
        if duration_s is not None and (int(duration_s) != duration_s or duration_s <= 0):
            raise ConfigError("duration", duration_s, "a positive whole number of seconds, or None (endless)")
        self.cfg = cfg
        self.seed = int(seed)
        self.duration_s = None if duration_s is None else int(duration_s)
        self.sample_rate_hz = int(cfg.sample_rate_hz)
        self.ifos = tuple(cfg.ifos)
        self._psd_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self.noise: dict[str, ColoredNoise | SegmentedNoise] = {}
        gcfg = cfg.glitches
        if noise:
            freqs, psd = self.psd(1.0 / NOISE_FIR_S)
            for ifo in self.ifos:
                noise_seed = derived_seed(self.seed, 0, IFO_NAMES.index(ifo))
                if gcfg.psd_variation > 0:
                    self.noise[ifo] = SegmentedNoise(
                        freqs, psd, self.sample_rate_hz, noise_seed, sigma=gcfg.psd_variation,
                        segment_s=gcfg.psd_segment_s, gain_seed=derived_seed(self.seed, 3, IFO_NAMES.index(ifo)),
                        fir_duration_s=NOISE_FIR_S,
                    )
                else:
                    self.noise[ifo] = ColoredNoise(freqs, psd, self.sample_rate_hz, noise_seed,
                                                   fir_duration_s=NOISE_FIR_S)
        self.projector: InjectionProjector | None = None
        if injections:
            self.projector = InjectionProjector(
                cfg.injections, seed=self.seed, ifos=self.ifos, sample_rate_hz=self.sample_rate_hz,
                start_gps=cfg.start_gps, psd_fn=self.psd, low_frequency_hz=cfg.low_frequency_hz,
            )
        self.glitcher: GlitchInjector | None = None
        if gcfg.blip_rate_per_hour or gcfg.scatter_rate_per_hour or gcfg.loud_rate_per_hour:
            self.glitcher = GlitchInjector(
                gcfg, seed=self.seed, ifos=self.ifos, sample_rate_hz=self.sample_rate_hz, start_gps=cfg.start_gps,
                psd_fn=self.psd, low_frequency_hz=cfg.low_frequency_hz,
            )
        logger.info(
            "simulator ifos=%s gps=%d seed=%d duration_s=%s rate_hz=%d noise=%s injections=%s psd=%s "
            "glitches_per_hour=%g/%g/%g psd_variation=%g",
            ",".join(self.ifos), cfg.start_gps, self.seed, self.duration_s, self.sample_rate_hz,
            bool(noise), bool(injections), cfg.psd_file or cfg.psd, gcfg.blip_rate_per_hour,
            gcfg.scatter_rate_per_hour, gcfg.loud_rate_per_hour, gcfg.psd_variation,
        )

    def psd(self, delta_f_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """The PSD the noise is drawn from, on a grid of step ``delta_f_hz`` up to Nyquist."""
        cached = self._psd_cache.get(delta_f_hz)
        if cached is None:
            cfg = self.cfg
            cached = load_psd(
                cfg.psd, path=cfg.psd_file, is_asd=cfg.psd_file_is_asd, sample_rate_hz=self.sample_rate_hz,
                delta_f_hz=delta_f_hz, low_frequency_hz=cfg.low_frequency_hz,
            )
            self._psd_cache[delta_f_hz] = cached
        return cached

    def _check_span(self, start_s: int, n_s: int) -> None:
        if int(start_s) != start_s or int(n_s) != n_s or start_s < 0 or n_s < 0:
            raise ValueError(f"start_s = {start_s!r}, n_s = {n_s!r}: expected whole seconds >= 0")
        if self.duration_s is not None and start_s + n_s > self.duration_s:
            raise ValueError(
                f"span [{start_s}, {start_s + n_s}) s is past the end of the data (duration_s = {self.duration_s})"
            )

    def chunk(self, start_s: int, n_s: int) -> dict[str, np.ndarray]:
        """Strain ``[start_s, start_s + n_s)`` s after ``cfg.start_gps``, random access.

        Returns
        -------
        dict of str to numpy.ndarray
            ``{ifo: float64 strain, shape (n_s * sample_rate_hz,)}``.
        """
        self._check_span(start_s, n_s)
        fs = self.sample_rate_hz
        start, n = int(start_s) * fs, int(n_s) * fs
        out = {
            ifo: self.noise[ifo].generate(start, n) if ifo in self.noise else np.zeros(n)
            for ifo in self.ifos
        }
        if self.projector is not None:
            self.projector.add_to(start, out)
        if self.glitcher is not None:
            self.glitcher.add_to(start, out)
        return out

    def iter_chunks(self, start_s: int = 0, chunk_s: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Consecutive chunks from ``start_s`` to the end (forever when endless).

        Yields
        ------
        gps : int
            GPS start of the chunk, s.
        strain : dict of str to numpy.ndarray
            ``{ifo: float64 strain}``; the last chunk is shorter when
            ``duration_s`` is not a multiple of ``chunk_s``.
        """
        chunk_s = int(chunk_s or self.cfg.chunk_s)
        if chunk_s <= 0:
            raise ValueError(f"chunk_s = {chunk_s}: expected > 0 s")
        pos = int(start_s)
        while self.duration_s is None or pos < self.duration_s:
            n_s = chunk_s if self.duration_s is None else min(chunk_s, self.duration_s - pos)
            yield self.cfg.start_gps + pos, self.chunk(pos, n_s)
            pos += n_s

    def injection_table(self, start_s: float = 0, stop_s: float | None = None) -> dict[str, np.ndarray]:
        """Injections with merger in ``[start_s, stop_s)`` s after ``cfg.start_gps``.

        ``stop_s`` defaults to ``duration_s``; an endless stream needs it.
        Without injections every column is empty.
        """
        if stop_s is None:
            if self.duration_s is None:
                raise ValueError("stop_s is required for an endless stream (duration_s = None)")
            stop_s = self.duration_s
        if self.projector is None:
            from .injections import injection_columns

            return {c: np.array([], dtype=str if c == "approximant" else float) for c in injection_columns(self.ifos)}
        return self.projector.table(start_s, stop_s)

    def glitch_table(self, start_s: float = 0, stop_s: float | None = None) -> dict[str, np.ndarray]:
        """Glitches centred in ``[start_s, stop_s)`` s after ``cfg.start_gps``, by time.

        Columns (:data:`~gwstream.daemon.io.framefiles.GLITCH_COLUMNS`): ``ifo`` (str), ``time``
        (GPS of the centre, s), ``kind`` (``blip``, ``scatter``, ``loud``), ``snr`` (optimal SNR
        in that detector), ``f0_hz`` (central frequency; the arch's top for scatter), ``q``
        (NaN for scatter), ``duration_s``. ``stop_s`` defaults to ``duration_s``; an endless
        stream needs it. Without glitches every column is empty. Needs no strain.
        """
        if stop_s is None:
            if self.duration_s is None:
                raise ValueError("stop_s is required for an endless stream (duration_s = None)")
            stop_s = self.duration_s
        if self.glitcher is None:
            return glitch_columns_empty()
        return self.glitcher.table(start_s, stop_s)

    def state_vector(self, n_seconds: int) -> np.ndarray:
        """``cfg.state_word`` at 16 Hz for ``n_seconds``, uint32."""
        return np.full(int(n_seconds) * STATE_RATE_HZ, self.cfg.state_word, dtype=np.uint32)


def _progress(total_s: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total_s, unit="s", desc=desc, disable=not enabled, file=sys.stderr, leave=False)


def run_simulate(
    cfg: SimulateConfig,
    *,
    duration_s: int,
    seed: int,
    out: str,
    fmt: str = "hdf5",
    injections_path: str | None = None,
    dtype: str = "float64",
    progress: bool = True,
    glitches_path: str | None = None,
) -> dict:
    """Write simulated data to HDF5 or 1-s GWF frames (``gwstream simulate``).

    Parameters
    ----------
    cfg : SimulateConfig
        What to simulate.
    duration_s : int
        Length, s (> 0).
    seed : int
        Master seed; the same seed gives bit-identical strain.
    out : str
        HDF5 file (``fmt="hdf5"``) or directory of frames (``fmt="gwf"``).
    fmt : {"hdf5", "gwf"}
        HDF5: groups ``<IFO>/`` with one dataset named by the integer GPS
        start, attributes ``start_time`` (s) and ``delta_t`` (s), written
        chunk by chunk into a full-size dataset. GWF: files
        ``<I>-<IFO>_<frame_type>-<gps>-1.gwf`` with ``<IFO>:<strain_channel>``
        and ``<IFO>:<state_channel>`` (uint32, 16 Hz).
    injections_path : str or None
        Where to write the injection table; None means no injections.
    glitches_path : str or None
        Where to write the glitch table
        (:func:`~gwstream.daemon.io.framefiles.write_glitch_file`); glitches are
        in the data whenever ``cfg.glitches`` asks for them, written or not.
    dtype : {"float64", "float32"}
        Stored strain type.
    progress : bool
        tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``files`` (paths written), ``n_injections``, ``n_glitches``, ``duration_s``,
        ``seed``, ``format``, ``start_gps``, ``sample_rate_hz``, ``ifos``.
    """
    if fmt not in ("hdf5", "gwf"):
        raise ConfigError("format", fmt, "'hdf5' or 'gwf'")
    if dtype not in ("float64", "float32"):
        raise ConfigError("dtype", dtype, "'float64' or 'float32'")
    if int(duration_s) != duration_s or duration_s <= 0:
        raise ConfigError("duration", duration_s, "a positive whole number of seconds")
    duration_s = int(duration_s)
    sim = Simulator(cfg, seed=seed, duration_s=duration_s, injections=injections_path is not None)
    fs = sim.sample_rate_hz
    files: list[str] = []
    if fmt == "hdf5":
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
            dsets = {}
            for ifo in sim.ifos:
                dset = fh.create_group(ifo).create_dataset(str(cfg.start_gps), shape=(duration_s * fs,), dtype=dtype)
                write_hdf5_layout_attrs(dset, cfg.start_gps, fs)
                dsets[ifo] = dset
            with _progress(duration_s, progress, "simulate hdf5") as bar:
                for gps, strain in sim.iter_chunks():
                    a = (gps - cfg.start_gps) * fs
                    for ifo in sim.ifos:
                        dsets[ifo][a:a + strain[ifo].size] = strain[ifo].astype(dtype, copy=False)
                    bar.update(strain[sim.ifos[0]].size // fs)
        files.append(str(path))
    else:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        state = sim.state_vector(1)
        with _progress(duration_s, progress, "simulate gwf") as bar:
            for gps, strain in sim.iter_chunks():
                n_s = strain[sim.ifos[0]].size // fs
                for i in range(n_s):
                    for ifo in sim.ifos:
                        frame = directory / gwf_name(ifo, cfg.frame_type, gps + i, 1)
                        write_gwf_frame(
                            frame, ifo, gps + i, fs, strain[ifo][i * fs:(i + 1) * fs].astype(dtype, copy=False),
                            state, cfg.strain_channel, cfg.state_channel,
                        )
                        files.append(str(frame))
                bar.update(n_s)
    n_injections = 0
    if injections_path is not None:
        table = sim.injection_table(0, duration_s)
        n_injections = len(table["tc"])
        Path(injections_path).parent.mkdir(parents=True, exist_ok=True)
        inj = cfg.injections
        write_injection_file(injections_path, table, attrs={
            "distance": "snr" if inj.snr else inj.distance, "distance_mpc": np.asarray(inj.distance_mpc, float),
            "snr": np.asarray(inj.snr, float), "duration_s": float(duration_s)})
        files.append(str(injections_path))
    glitches = sim.glitch_table(0, duration_s)
    n_glitches = len(glitches["time"])
    if glitches_path is not None:
        Path(glitches_path).parent.mkdir(parents=True, exist_ok=True)
        attrs = {k: np.asarray(v, float) if isinstance(v, list) else v
                 for k, v in section_to_dict(cfg.glitches).items()}
        write_glitch_file(glitches_path, glitches, attrs={
            **attrs, "start_gps": cfg.start_gps, "duration_s": float(duration_s), "seed": int(seed),
            "sample_rate_hz": fs, "ifos": ",".join(sim.ifos)})
        files.append(str(glitches_path))
    logger.info(
        "simulated format=%s gps=%d duration_s=%d seed=%d files=%d n_injections=%d n_glitches=%d",
        fmt, cfg.start_gps, duration_s, seed, len(files), n_injections, n_glitches,
    )
    return {
        "files": files,
        "n_injections": n_injections,
        "n_glitches": n_glitches,
        "duration_s": duration_s,
        "seed": int(seed),
        "format": fmt,
        "start_gps": cfg.start_gps,
        "sample_rate_hz": fs,
        "ifos": list(sim.ifos),
    }
