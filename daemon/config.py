"""gwstream configuration: TOML files in ``configs/`` loaded into frozen, validated objects.

Each TOML table maps onto one frozen section dataclass below; unknown keys and
impossible values raise :class:`~gwstream.daemon.errors.ConfigError` naming the
dotted key, the value and what was expected. Seconds are the unit at this
edge; sample counts are derived once here (``*_samples`` properties).

Examples
--------
>>> from gwstream.daemon.config import load_config
>>> cfg = load_config("configs/online.toml")
>>> cfg.windows.stride_s
0.0625
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError
from .settings import build_section, section_to_dict, setting
from .units import NS, seconds_to_ns

__all__ = [
    "Config",
    "EndpointsConfig",
    "DataConfig",
    "IngestConfig",
    "PsdConfig",
    "WhitenConfig",
    "WindowsConfig",
    "SimulateConfig",
    "InjectionConfig",
    "GlitchConfig",
    "SourceConfig",
    "TrainConfig",
    "TrainStage",
    "load_config",
    "config_from_dict",
    "IFO_NAMES",
    "PSD_ANALYTIC_DEFAULT",
    "state_path",
    "alerts_path",
    "archive_path",
]

#: Detectors gwstream knows the geometry of (pycbc.detector names).
IFO_NAMES = ("H1", "L1", "V1", "K1")
PSD_ANALYTIC_DEFAULT = "aLIGOZeroDetHighPower"


def _is_integer(x: float, tol: float = 1e-9) -> bool:
    return abs(x - round(x)) <= tol * max(1.0, abs(x))


def _need_integer_samples(key: str, seconds: float, rate_hz: int) -> int:
    n = seconds * rate_hz
    if not _is_integer(n):
        raise ConfigError(
            key, seconds, f"a duration that is a whole number of samples at {rate_hz} Hz (got {n:g} samples)"
        )
    return int(round(n))


def _check_endpoint(key: str, value: str) -> None:
    if not value.startswith(("tcp://", "ipc://", "inproc://")):
        raise ConfigError(key, value, "a ZeroMQ endpoint such as 'tcp://127.0.0.1:5555' or 'ipc:///path'")


@dataclass(frozen=True)
class EndpointsConfig:
    """Where the processes talk. The daemon binds all of these."""

    frames: str = setting("tcp://127.0.0.1:5555", doc="frames in (sources connect here)")
    alerts: str = setting("tcp://127.0.0.1:5556", doc="alerts out (subscribers connect here)")
    blocks: str = setting("tcp://127.0.0.1:5557", doc="ingest -> search aligned blocks")
    metrics: str = setting("127.0.0.1:9108", doc="Prometheus host:port")
    allow_remote: bool = setting(False, doc="permit non-loopback frames/alerts endpoints (CURVE required)")
    curve_server_secret: str = setting("", doc="daemon: CURVE secret key file; frames/alerts become CURVE servers")
    curve_clients_dir: str = setting("", doc="daemon: directory of allowed clients' CURVE public keys")
    curve_client_secret: str = setting("", doc="source/listen: this client's CURVE secret key file")
    curve_server_public: str = setting("", doc="source/listen: the daemon's CURVE public key file")

    def check(self, prefix: str) -> None:
        curve = bool(self.curve_server_secret or self.curve_server_public)
        for name in ("frames", "alerts", "blocks"):
            value = getattr(self, name)
            _check_endpoint(f"{prefix}{name}", value)
            if value.startswith("tcp://"):
                host = value[len("tcp://"):].rsplit(":", 1)[0]
                if host not in ("127.0.0.1", "localhost", "[::1]", "::1"):
                    if name == "blocks":
                        raise ConfigError(f"{prefix}{name}", value,
                                          "a loopback or ipc:// endpoint (ingest -> search never leaves the host)")
                    if not self.allow_remote:
                        raise ConfigError(
                            f"{prefix}{name}", value,
                            "a loopback address (127.0.0.1, localhost, [::1]) unless endpoints.allow_remote = true",
                        )
                    if not curve:
                        raise ConfigError(
                            f"{prefix}{name}", value,
                            "CURVE authentication for a non-loopback endpoint: set endpoints.curve_server_secret "
                            "(daemon) or endpoints.curve_server_public + curve_client_secret (clients)",
                        )
        host, _, port = self.metrics.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{prefix}metrics", self.metrics, "'host:port', e.g. '127.0.0.1:9108'")


@dataclass(frozen=True)
class DataConfig:
    """Detectors, channels, sample rates and the analysis-ready state-vector mask."""

    ifos: tuple[str, ...] = setting(("H1", "L1"), doc="detectors analysed, in order")
    strain_channel: str = setting("GDS-CALIB_STRAIN", doc="channel name after '<IFO>:'")
    state_channel: str = setting("GDS-CALIB_STATE_VECTOR", doc="state vector channel after '<IFO>:'")
    state_mask: int = setting(3, ge=0, lt=2**32, doc="bits required for analysis-ready (0 and 1)")
    input_rate_hz: int = setting(16384, ge=0, doc="native frame rate; 0 = learn from the first frame")
    analysis_rate_hz: int = setting(2048, gt=0, doc="rate the search analyses at")

    def check(self, prefix: str) -> None:
        if not self.ifos:
            raise ConfigError(f"{prefix}ifos", list(self.ifos), "at least one detector")
        for ifo in self.ifos:
            if ifo not in IFO_NAMES:
                raise ConfigError(f"{prefix}ifos", list(self.ifos), "detectors among " + ", ".join(IFO_NAMES))
        if len(set(self.ifos)) != len(self.ifos):
            raise ConfigError(f"{prefix}ifos", list(self.ifos), "each detector once")
        if self.input_rate_hz and self.input_rate_hz % self.analysis_rate_hz:
            raise ConfigError(
                f"{prefix}input_rate_hz", self.input_rate_hz,
                f"an integer multiple of analysis_rate_hz = {self.analysis_rate_hz} Hz "
                f"(resample factor {self.input_rate_hz / self.analysis_rate_hz:g} is not an integer)",
            )

    @property
    def resample_factor(self) -> int | None:
        """Decimation factor input -> analysis, or None when learnt from the data."""
        return self.input_rate_hz // self.analysis_rate_hz if self.input_rate_hz else None

    def channel(self, ifo: str) -> str:
        return f"{ifo}:{self.strain_channel}"


@dataclass(frozen=True)
class IngestConfig:
    """Ring buffers, alignment and the late-frame policy of the ingest process."""

    block_s: float = setting(1.0, gt=0, unit="s", doc="duration of each aligned block handed to search")
    buffer_s: float = setting(64.0, gt=0, unit="s", doc="ring buffer length per detector")
    late_timeout_s: float = setting(2.0, ge=0, unit="s", doc="wait for a late detector, then mark a gap")
    max_message_bytes: int = setting(8 * 2**20, gt=0, unit="bytes", doc="hard cap on one frame message")
    status_interval_s: float = setting(10.0, gt=0, unit="s", doc="period of the status log line")
    high_water_mark: int = setting(64, gt=0, doc="ZeroMQ queue length (messages) before back-pressure")

    def check(self, prefix: str) -> None:
        if self.buffer_s < 2 * self.block_s:
            raise ConfigError(f"{prefix}buffer_s", self.buffer_s, f">= 2 x block_s = {2 * self.block_s} s")
        if not _is_integer(self.block_s * NS):
            raise ConfigError(f"{prefix}block_s", self.block_s, "a whole number of nanoseconds")

    @property
    def block_ns(self) -> int:
        return seconds_to_ns(self.block_s)


@dataclass(frozen=True)
class PsdConfig:
    """Welch PSD estimated over the trailing ``psd_length_s`` of valid data."""

    fftlength_s: float = setting(4.0, gt=0, unit="s", doc="length of each Welch segment")
    overlap: float = setting(0.5, ge=0, lt=1, doc="fraction of fftlength")
    average: str = setting("median", choices=("median", "mean"),
                           doc="how the segments' periodograms are combined (median is robust to glitches)")
    psd_length_s: float = setting(64.0, gt=0, unit="s",
                                  doc="trailing valid data the PSD is estimated over (and the warm-up "
                                      "before the first analysed window)")
    refresh_s: float = setting(8.0, gt=0, unit="s", doc="cadence of PSD re-estimation")
    max_change: float = setting(0.2, gt=0, doc="reject a PSD whose broadband sensitivity jumps by more")
    min_change: float = setting(0.01, ge=0, doc="keep the current PSD (and whitening filter) unless the broadband "
                                "sensitivity moved by at least this much (PyCBC Live's psd_recalculate_difference)")

    def check(self, prefix: str) -> None:
        if self.psd_length_s < self.fftlength_s:
            raise ConfigError(
                f"{prefix}psd_length_s", self.psd_length_s,
                f">= fftlength_s = {self.fftlength_s} s (the PSD needs at least one FFT segment)",
            )
        if self.min_change >= self.max_change:
            raise ConfigError(f"{prefix}min_change", self.min_change,
                              f"< max_change = {self.max_change} (estimates between the two replace the PSD)")


@dataclass(frozen=True)
class WhitenConfig:
    """Truncated inverse-ASD FIR whitening."""

    fduration_s: float = setting(1.0, gt=0, unit="s", doc="FIR length")
    highpass_hz: float = setting(20.0, ge=0, unit="Hz", doc="the whitening filter removes power below this")
    phase: str = setting("minimum", choices=("linear", "minimum"),
                         doc="minimum: causal, no look-ahead (the shipped model's); linear: symmetric, "
                             "fduration_s / 2 of look-ahead. Must be the phase the model was trained with")
    gate_threshold: float = setting(0.0, ge=0, doc="autogating: a whitened sample above this many standard "
                                    "deviations (the whitened stream has unit variance) is gated: zeroed within "
                                    "+- gate_half_width_s, Tukey-tapered over gate_taper_s, and every window that "
                                    "touches the gate or the filter's reach after it is not analysed; 0 = off")
    gate_half_width_s: float = setting(0.25, gt=0, unit="s", doc="half-width of the zeroed stretch")
    gate_taper_s: float = setting(0.25, ge=0, unit="s", doc="Tukey taper on each side of it (adds this plus "
                                  "gate_half_width_s of latency: a gate reaches back that far)")


@dataclass(frozen=True)
class WindowsConfig:
    """Sliding windows cut from the whitened stream."""

    window_s: float = setting(1.0, gt=0, unit="s", doc="length of a window the model scores (must be the model's)")
    stride_s: float = setting(0.0625, gt=0, unit="s", doc="step between consecutive windows")

    def check(self, prefix: str) -> None:
        if self.stride_s > self.window_s:
            raise ConfigError(
                f"{prefix}stride_s", self.stride_s, f"<= window_s = {self.window_s} s (stride longer than window)"
            )


@dataclass(frozen=True)
class InjectionConfig:
    """Distributions binary-black-hole injections are drawn from."""

    approximant: str = setting("IMRPhenomXPHM", choices=("IMRPhenomXPHM", "IMRPhenomD"),
                               doc="pycbc time-domain waveform model")
    f_lower_hz: float = setting(20.0, gt=0, unit="Hz", doc="waveform start frequency")
    mass1_msun: tuple[float, float] = setting((7.0, 50.0), gt=0, unit="Msun", doc="uniform range")
    mass2_msun: tuple[float, float] = setting((7.0, 50.0), gt=0, unit="Msun", doc="uniform range; m2 <= m1")
    mass_distribution: str = setting("uniform", choices=("uniform", "log_uniform"),
                                     doc="each component mass uniform, or uniform in its logarithm (more light "
                                         "binaries), over its range")
    spin: str = setting("aligned", choices=("zero", "aligned", "isotropic"),
                        doc="zero, aligned (z components only) or isotropic spins")
    spin_max: float = setting(0.99, ge=0, lt=1, doc="largest dimensionless spin magnitude")
    distance: str = setting(
        "uniform_volume", choices=("uniform", "uniform_volume", "chirp_uniform_volume"),
        doc="how luminosity (or chirp) distance is drawn from distance_mpc",
    )
    distance_mpc: tuple[float, float] = setting((100.0, 1000.0), gt=0, unit="Mpc",
                                                doc="distance range (chirp distance for chirp_uniform_volume)")
    snr: tuple[float, ...] = setting((), gt=0, doc="[lo, hi]: target network optimal SNR instead of distance")
    spacing_s: float = setting(24.0, gt=0, unit="s", doc="grid step between merger times")
    jitter_s: float = setting(2.0, ge=0, unit="s", doc="uniform +- jitter on each grid time")

    def check(self, prefix: str) -> None:
        for name in ("mass1_msun", "mass2_msun", "distance_mpc"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{prefix}{name}", [lo, hi], "[low, high] with low <= high")
        if self.snr and (len(self.snr) != 2 or self.snr[0] > self.snr[1]):
            raise ConfigError(f"{prefix}snr", list(self.snr), "empty, or [low, high] with low <= high")
        if 2 * self.jitter_s >= self.spacing_s:
            raise ConfigError(f"{prefix}jitter_s", self.jitter_s, f"< spacing_s / 2 = {self.spacing_s / 2} s")
        if self.approximant == "IMRPhenomD" and self.spin == "isotropic":
            raise ConfigError(f"{prefix}spin", self.spin, "'zero' or 'aligned' (IMRPhenomD has no precession)")


@dataclass(frozen=True)
class GlitchConfig:
    """Glitches (non-Gaussian transients) and per-segment PSD variation in simulated data; off by default.

    Each detector draws its own glitches, Poisson in time, per population (daemon/sim/glitches.py).
    Amplitudes are set by the optimal (matched-filter) SNR in that detector against the simulator's
    PSD, drawn log-uniform over the population's SNR range; q uniform, frequencies log-uniform
    (scattering's f_max and duration uniform).
    """

    blip_rate_per_hour: float = setting(0.0, ge=0, unit="1/h",
                                        doc="blips (sine-Gaussians) per hour per detector; 0 = none")
    blip_q: tuple[float, float] = setting((2.0, 20.0), gt=0, doc="[lo, hi]: blip quality factor, uniform")
    blip_f0_hz: tuple[float, float] = setting((30.0, 500.0), gt=0, unit="Hz",
                                              doc="[lo, hi]: blip central frequency, log-uniform")
    scatter_rate_per_hour: float = setting(0.0, ge=0, unit="1/h",
                                           doc="scattered-light arches per hour per detector; 0 = none")
    scatter_f_max_hz: tuple[float, float] = setting((15.0, 60.0), gt=0, unit="Hz",
                                                    doc="[lo, hi]: frequency at the top of the arch, uniform")
    scatter_duration_s: tuple[float, float] = setting((1.5, 5.0), gt=0, unit="s",
                                                      doc="[lo, hi]: length of the arch, uniform")
    snr: tuple[float, float] = setting((6.0, 300.0), gt=0,
                                       doc="[lo, hi]: optimal SNR of blips and arches, log-uniform")
    loud_rate_per_hour: float = setting(0.0, ge=0, unit="1/h",
                                        doc="loud broadband transients (ms-long, Q = 1 sine-Gaussians: what "
                                            "autogating removes) per hour per detector; 0 = none")
    loud_f0_hz: tuple[float, float] = setting((100.0, 400.0), gt=0, unit="Hz",
                                              doc="[lo, hi]: loud transient central frequency, log-uniform")
    loud_snr: tuple[float, float] = setting((200.0, 5000.0), gt=0,
                                            doc="[lo, hi]: optimal SNR of loud transients, log-uniform")
    psd_variation: float = setting(0.0, ge=0,
                                   doc="sigma of the log-normal ASD factor drawn per segment and frequency band "
                                       "(bands centred at 25, 75, 225, 675 Hz, interpolated in log f; 8-s "
                                       "raised-cosine ramps at segment edges); 0 = stationary noise")
    psd_segment_s: float = setting(0.0, ge=0, unit="s",
                                   doc="segment length of psd_variation (>= 16 s when psd_variation > 0)")

    def check(self, prefix: str) -> None:
        for name in ("blip_q", "blip_f0_hz", "scatter_f_max_hz", "scatter_duration_s", "snr", "loud_f0_hz",
                     "loud_snr"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{prefix}{name}", [lo, hi], "[low, high] with low <= high")
        if self.psd_variation > 0 and self.psd_segment_s < 16.0:
            raise ConfigError(f"{prefix}psd_segment_s", self.psd_segment_s,
                              ">= 16 s when psd_variation > 0 (two 8-s ramps per segment)")


@dataclass(frozen=True)
class SimulateConfig:
    """Simulated two-detector data: coloured Gaussian noise plus injections."""

    ifos: tuple[str, ...] = setting(("H1", "L1"), doc="detectors simulated, in order")
    psd: str = setting(PSD_ANALYTIC_DEFAULT, doc="pycbc analytic PSD name")
    psd_file: str = setting("", doc="two-column text file (Hz, PSD); overrides psd")
    psd_file_is_asd: bool = setting(False, doc="psd_file holds an amplitude spectral density (squared on reading)")
    low_frequency_hz: float = setting(10.0, gt=0, unit="Hz", doc="noise has no power below this")
    sample_rate_hz: int = setting(2048, choices=(1024, 2048, 4096, 8192, 16384), unit="Hz",
                                  doc="sample rate of the written strain")
    start_gps: int = setting(1_000_000_000, ge=0, unit="s", doc="GPS second the data start at")
    chunk_s: int = setting(64, gt=0, unit="s", doc="generation chunk (bounds memory)")
    frame_type: str = setting("SIM", doc="GWF file name tag: H-H1_<frame_type>-<gps>-1.gwf")
    strain_channel: str = setting("GDS-CALIB_STRAIN", doc="strain channel name after '<IFO>:'")
    state_channel: str = setting("GDS-CALIB_STATE_VECTOR", doc="state vector channel name after '<IFO>:'")
    state_word: int = setting(0b111111111111111, ge=0, lt=2**32, doc="state vector of simulated data")
    injections: InjectionConfig = dataclasses.field(default_factory=InjectionConfig)
    glitches: GlitchConfig = dataclasses.field(default_factory=GlitchConfig)

    def check(self, prefix: str) -> None:
        for ifo in self.ifos:
            if ifo not in IFO_NAMES:
                raise ConfigError(f"{prefix}ifos", list(self.ifos), "detectors among " + ", ".join(IFO_NAMES))
        if self.injections.f_lower_hz >= self.sample_rate_hz / 2:
            raise ConfigError(
                f"{prefix}injections.f_lower_hz", self.injections.f_lower_hz,
                f"< Nyquist = {self.sample_rate_hz / 2} Hz",
            )
        for name in ("blip_f0_hz", "scatter_f_max_hz", "loud_f0_hz"):
            hi = getattr(self.glitches, name)[1]
            if hi >= self.sample_rate_hz / 2:
                raise ConfigError(f"{prefix}glitches.{name}", list(getattr(self.glitches, name)),
                                  f"frequencies < Nyquist = {self.sample_rate_hz / 2} Hz")
        if self.glitches.scatter_rate_per_hour and self.glitches.scatter_f_max_hz[0] <= self.low_frequency_hz:
            raise ConfigError(f"{prefix}glitches.scatter_f_max_hz", list(self.glitches.scatter_f_max_hz),
                              f"frequencies > low_frequency_hz = {self.low_frequency_hz} Hz (an arch below it has "
                              "no SNR to scale to)")


@dataclass(frozen=True)
class SourceConfig:
    """Frame sources: pacing and how a live GWF directory is followed."""

    speed: str = setting("max", doc="'real', 'max' or a factor such as '10'")
    poll_s: float = setting(0.1, gt=0, unit="s", doc="directory poll period")
    read_retries: int = setting(5, ge=0, doc="retries of a half-written file")
    retry_wait_s: float = setting(0.2, ge=0, unit="s", doc="wait between those retries")
    file_timeout_s: float = setting(30.0, gt=0, unit="s", doc="give up on an expected file and move on")

    def check(self, prefix: str) -> None:
        parse_speed(self.speed, f"{prefix}speed")


def _training_glitches() -> GlitchConfig:
    # loud transients are autogating's job: a few, capped at SNR 1000 (whitened peaks of hundreds of sigma),
    # teach the network to rank them as noise when gating is off
    return GlitchConfig(blip_rate_per_hour=20.0, scatter_rate_per_hour=6.0, loud_rate_per_hour=2.0,
                        loud_snr=(200.0, 1000.0))


def _training_injections() -> InjectionConfig:
    return InjectionConfig(approximant="IMRPhenomXPHM", mass1_msun=(7.0, 50.0), mass2_msun=(7.0, 50.0),
                           spin="isotropic", spin_max=0.99)


@dataclass(frozen=True)
class TrainStage:
    """One stage of a staged ``gwstream train`` run (``[[train.stages]]``): the keys it changes.

    A stage trains the model the previous stage left (the first: ``train.init_weights``,
    or random) with ``[train]``'s settings overridden by the keys set here; a key left
    out inherits ``[train]``'s value, except ``seed``, which defaults to
    ``train.seed + <stage index>`` so no two stages draw the same epochs. The waveform
    banks, noise PSDs, validation windows and model are ``[train]``'s, shared by all stages.
    """

    epochs: int | None = setting(None, gt=0, doc="train.epochs for this stage")
    windows_per_epoch: int | None = setting(None, gt=0, doc="train.windows_per_epoch for this stage")
    batch_size: int | None = setting(None, gt=0, doc="train.batch_size for this stage")
    lr: float | None = setting(None, gt=0, doc="train.lr for this stage")
    weight_decay: float | None = setting(None, ge=0, doc="train.weight_decay for this stage")
    signal_fraction: float | None = setting(None, gt=0, lt=1, doc="train.signal_fraction for this stage")
    single_ifo_fraction: float | None = setting(None, ge=0, lt=1, doc="train.single_ifo_fraction for this stage")
    single_ifo_snr: tuple[float, float] | None = setting(None, gt=0, doc="train.single_ifo_snr for this stage")
    hard_negative_fraction: float | None = setting(None, ge=0, lt=1, doc="train.hard_negative_fraction for this stage")
    hard_negative_slides: int | None = setting(None, gt=0, doc="train.hard_negative_slides for this stage")
    hard_negative_span_s: int | None = setting(None, gt=0, unit="s", doc="train.hard_negative_span_s for this stage")
    loud_fraction: float | None = setting(None, ge=0, le=1, doc="train.loud_fraction for this stage")
    loud_snr: tuple[float, float] | None = setting(None, gt=0, doc="train.loud_snr for this stage")
    glitch_fraction: float | None = setting(None, ge=0, lt=1, doc="train.glitch_fraction for this stage")
    glitch_signal_fraction: float | None = setting(None, ge=0, le=1, doc="train.glitch_signal_fraction for this stage")
    snr_start: tuple[float, float] | None = setting(None, gt=0, doc="train.snr_start for this stage")
    snr_end: tuple[float, float] | None = setting(None, gt=0, doc="train.snr_end for this stage")
    curriculum_epochs: int | None = setting(None, ge=0, doc="train.curriculum_epochs for this stage")
    seed: int | None = setting(None, ge=0, doc="default train.seed + the stage's index")
    select_epoch: str | None = setting(None, choices=("best", "last"), doc="train.select_epoch for this stage")


@dataclass(frozen=True)
class TrainConfig:
    """``gwstream train``: simulated, whitened windows and the optimiser."""

    model: str = setting("factorized", choices=("baseline", "resnet", "factorized"),
                         doc="network trained (factorized: the default's; baseline, resnet: the comparison)")
    epochs: int = setting(20, gt=0, doc="training epochs (a stage may set its own)")
    windows_per_epoch: int = setting(16384, gt=0, doc="fresh noise (and signals) every epoch")
    batch_size: int = setting(64, gt=0, doc="windows per optimiser step")
    lr: float = setting(1e-3, gt=0, doc="Adam learning rate")
    weight_decay: float = setting(1e-4, ge=0, doc="AdamW weight decay")
    signal_fraction: float = setting(0.5, gt=0, lt=1, doc="fraction of windows with a coincident signal")
    single_ifo_fraction: float = setting(0.0, ge=0, lt=1, doc="windows with a signal in one detector only, "
                                         "labelled noise (teaches coincidence: time slides, glitches)")
    single_ifo_snr: tuple[float, float] = setting((5.0, 40.0), gt=0, doc="single-detector SNR of those")
    hard_negative_fraction: float = setting(0.0, ge=0, lt=1, doc="noise windows mined each epoch as the highest-"
                                            "scoring (by the current model) of many time-slid noise windows")
    hard_negative_slides: int = setting(16, gt=0, doc="time slides (1 s apart) scanned per noise stretch")
    hard_negative_span_s: int = setting(48, gt=0, unit="s", doc="seconds of each stretch scanned for them")
    loud_fraction: float = setting(0.0, ge=0, le=1, doc="signals whose network SNR is instead log-uniform in "
                                   "loud_snr (keeps the statistic rising with SNR)")
    loud_snr: tuple[float, float] = setting((16.0, 64.0), gt=0, doc="network SNR range of those")
    glitch_fraction: float = setting(0.0, ge=0, lt=1, doc="noise windows (label 0) holding a simulated glitch "
                                     "(train.glitches' shapes) in one detector, and with probability "
                                     "glitch_both_fraction another, independent one in the other detector")
    glitch_both_fraction: float = setting(0.25, ge=0, le=1, doc="of the glitch windows, those with a glitch in "
                                          "both detectors (what a time slide pairs)")
    glitch_signal_fraction: float = setting(0.0, ge=0, le=1, doc="signal windows that also hold a glitch in one "
                                            "detector (a glitch must not veto a real signal)")
    glitch_coincident_fraction: float = setting(0.0, ge=0, le=1, doc="of the glitch pairs, those lined up within "
                                                "20 ms, as a signal's arrivals are (at random times 1-4 % are, "
                                                "fewer for long arches)")
    snr_start: tuple[float, float] = setting((12.0, 30.0), gt=0, doc="network SNR range, first epoch")
    snr_end: tuple[float, float] = setting((5.0, 20.0), gt=0, doc="network SNR range after the curriculum")
    curriculum_epochs: int = setting(8, ge=0, doc="epochs to move from snr_start to snr_end")
    merger_span_s: tuple[float, float] = setting((0.5, 0.9), ge=0, unit="s", doc="merger position in the window")
    n_waveforms: int = setting(2000, gt=0, doc="training waveform bank")
    n_val_waveforms: int = setting(400, gt=0, doc="validation bank (other seed)")
    psd: str = setting(PSD_ANALYTIC_DEFAULT, doc="pycbc analytic design PSD the training noise is drawn around")
    psd_variants: int = setting(8, gt=0, doc="design PSD + perturbed variants")
    psd_scale: float = setting(2.0, ge=1, doc="variants scaled by up to this factor either way")
    psd_tilt: float = setting(0.3, ge=0, doc="variants tilted by (f/100 Hz)^U(-tilt, tilt)")
    stretch_s: int = setting(128, gt=8, unit="s", doc="noise stretch the PSD is estimated over")
    val_noise_windows: int = setting(10000, gt=0, doc="held-out noise windows (the FPR of the selection metric)")
    val_snrs: tuple[float, ...] = setting((6.0, 8.0, 10.0, 12.0), gt=0,
                                          doc="network SNRs of the held-out signal windows")
    val_windows_per_snr: int = setting(1000, gt=0, doc="held-out signal windows per SNR")
    seed: int = setting(0, ge=0, doc="seed of every random draw (banks, noise, windows, weights)")
    threads: int = setting(2, gt=0, doc="torch CPU threads")
    workers: int = setting(2, gt=0, doc="processes generating the waveform bank")
    out_dir: str = setting("out/train", doc="checkpoints, cached banks, history")
    weights: str = setting("models/weights/default.pt", doc="where the selected model is written")
    select_epoch: str = setting("best", choices=("best", "last"), doc="the epoch written: highest held-out TPR at "
                                "FPR 1e-3 and SNR 8 (ties: AUC), or the last one")
    init_weights: str = setting("", doc="start from this checkpoint's weights (fine-tuning); empty = random")
    dilations: tuple[int, ...] = setting((), gt=0, doc="factorized, from scratch: the encoder's dilations, one "
                                         "residual block each (empty: the network's default, 6 blocks; the "
                                         "shipped models have 5, [2, 4, 8, 16, 32])")
    template_pairs: int = setting(0, ge=0, doc="factorized: whitened-template filter pairs in the encoder's template "
                                  "branch, added to a network without one (0: none, or the init_weights network's)")
    template_taps: int = setting(1024, gt=0, doc="length of each template filter (samples, at most the receptive "
                                 "field); the merger sits template_after samples before its end")
    template_after: int = setting(100, ge=0, doc="template samples after the merger")
    template_lr_scale: float = setting(1.0, gt=0, doc="learning rate of the best-template statistic's weight in "
                                       "the logit (template_gain), as a multiple of lr: added to a trained "
                                       "network, it starts at zero")
    template_gain_init: float = setting(0.0, ge=0, doc="template_gain of a new template branch: 0 leaves the "
                                        "network's outputs as they were, 1 starts the logit at the best-template "
                                        "statistic (a network trained from scratch learns around a matched filter)")
    template_filter_lr_scale: float = setting(0.01, ge=0, doc="learning rate of the template filters, as a "
                                              "multiple of lr; 0 keeps them as placed (frozen: no gradient is "
                                              "computed for them, so a batch costs less)")
    template_gain: str = setting("shared", choices=("shared", "per_template"), doc="one weight on the best-template "
                                 "statistic for all templates, or one per template (a shared-gain init_weights "
                                 "network is converted, each gain starting at the shared one)")
    template_bank: str = setting("", doc="factorized: a file of templates (CSV with columns mass1, mass2, spin1z, "
                                 "spin2z, or a placed TemplateBank .npz) added to the template branch, grown like "
                                 "template_pairs' ladder (each with a head unit set to its two-detector SNR^2); "
                                 "template_pairs must then count them")
    template_units: str = setting("dense", choices=("dense", "diagonal"), doc="factorized: template unit k reads "
                                  "every feature channel, or only its own template's energy (FactorizedNet."
                                  "diagonal_template_units: cheap for hundreds of templates; a dense init_weights "
                                  "network is converted)")
    injections: InjectionConfig = dataclasses.field(default_factory=_training_injections)
    glitches: GlitchConfig = dataclasses.field(default_factory=_training_glitches)
    stages: tuple[TrainStage, ...] = setting((), doc="[[train.stages]]: train in stages, each changing some keys "
                                             "of [train] (empty: one stage, [train] itself)")

    def stage_configs(self) -> list["TrainConfig"]:
        """The settings of each stage, in order (``[self]`` when there are no stages)."""
        if not self.stages:
            return [self]
        out = []
        for i, st in enumerate(self.stages):
            keys = {k: v for k, v in dataclasses.asdict(st).items() if v is not None}
            keys.setdefault("seed", self.seed + i)
            out.append(dataclasses.replace(self, stages=(), **keys))
        return out

    def check(self, prefix: str) -> None:
        if self.stages:
            for i, st in enumerate(self.stage_configs()):
                st.check(f"{prefix}stages[{i}].")
        if self.signal_fraction + self.single_ifo_fraction >= 1:
            raise ConfigError(f"{prefix}single_ifo_fraction", self.single_ifo_fraction,
                              f"< 1 - signal_fraction = {1 - self.signal_fraction:g} (some windows must be noise)")
        if self.signal_fraction + self.single_ifo_fraction + self.hard_negative_fraction >= 1:
            raise ConfigError(f"{prefix}hard_negative_fraction", self.hard_negative_fraction,
                              f"< 1 - signal_fraction - single_ifo_fraction = "
                              f"{1 - self.signal_fraction - self.single_ifo_fraction:g} (some windows must be "
                              f"plain noise)")
        used = self.signal_fraction + self.single_ifo_fraction + self.hard_negative_fraction
        if used + self.glitch_fraction >= 1:
            raise ConfigError(f"{prefix}glitch_fraction", self.glitch_fraction,
                              f"< 1 - signal_fraction - single_ifo_fraction - hard_negative_fraction = {1 - used:g} "
                              f"(some windows must be plain noise)")
        if (self.glitch_fraction > 0 or self.glitch_signal_fraction > 0) and not any(
                (self.glitches.blip_rate_per_hour, self.glitches.scatter_rate_per_hour,
                 self.glitches.loud_rate_per_hour)):
            raise ConfigError(f"{prefix}glitches.blip_rate_per_hour", self.glitches.blip_rate_per_hour,
                              "a positive rate for at least one population when train.glitch_fraction or "
                              "train.glitch_signal_fraction is set (the rates weigh the populations)")
        if self.hard_negative_fraction > 0 and self.hard_negative_span_s + self.hard_negative_slides > self.stretch_s:
            raise ConfigError(f"{prefix}hard_negative_span_s", self.hard_negative_span_s,
                              f"<= stretch_s - hard_negative_slides = {self.stretch_s - self.hard_negative_slides} s "
                              f"(the slid L1 data must lie inside the stretch)")
        for name in ("snr_start", "snr_end", "merger_span_s", "single_ifo_snr", "loud_snr"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"{prefix}{name}", [lo, hi], "[low, high] with low <= high")
        if self.merger_span_s[1] >= 1.0:
            raise ConfigError(f"{prefix}merger_span_s", list(self.merger_span_s), "inside the 1-s window (< 1 s)")


def parse_speed(value: str, key: str = "speed") -> float:
    """'real' -> 1.0, 'max' -> inf, '<factor>' -> factor (> 0)."""
    if value == "real":
        return 1.0
    if value == "max":
        return float("inf")
    try:
        factor = float(value)
    except ValueError:
        raise ConfigError(key, value, "'real', 'max' or a positive number") from None
    if not factor > 0 or factor != factor:
        raise ConfigError(key, value, "'real', 'max' or a positive number")
    return factor


@dataclass(frozen=True)
class ModelConfig:
    """The network that scores windows."""

    path: str = setting("", doc="checkpoint file; empty = the shipped default model (models/weights/default.pt)")
    device: str = setting("auto", doc="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'")
    batch_size: int = setting(1024, gt=0, doc="windows per forward pass (joint models)")
    threads: int = setting(0, ge=0, doc="torch CPU threads; 0 = torch's default")
    group_blocks: int = setting(16, gt=0, doc="queued blocks a factorized model's encoder takes in one pass "
                                "(a backlog: replay at full speed, catching up); 1 = one block at a time")

    def check(self, prefix: str) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ConfigError(f"{prefix}device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass(frozen=True)
class RankingConfig:
    """Clustering, time slides and false-alarm rates."""

    cluster_window_s: float = setting(0.75, gt=0, unit="s",
                                      doc="one trigger per this much time; an alert waits half of it after its peak")
    var_s: float = setting(0.0, ge=0, unit="s", doc="timing tolerance; 0 = half the model's merger span + stride")
    time_plateau: float = setting(3.0, ge=0, doc="trigger time from the middle of the windows next to the peak "
                                  "(within the cluster) whose statistic is within this of the peak's; 0 = the "
                                  "peak window alone")
    template_time_snr: float = setting(8.0, ge=0, doc="with a template branch (factorized models), trigger time from "
                                       "the best template's step in those windows when its uncapped network SNR is "
                                       "at least this (a template dates a loud merger more finely than the windows' "
                                       "stride); 0 = never")
    slide_step_s: float = setting(1.0, ge=0.1, unit="s", doc="L1 shift per time slide (>> 10 ms light travel)")
    n_slides: int = setting(1000, ge=0, doc="time slides with a factorized model (head only per slide)")
    n_slides_joint: int = setting(8, ge=0, doc="time slides with a joint model (full inference per slide)")
    background_exact: int = setting(100_000, gt=0, doc="loudest background statistics kept exactly")
    state_file: str = setting("", doc="background + ranking state (HDF5), restored on start; empty = none")
    background_init: str = setting("", doc="background to start from: a file (gwstream search --background-out), "
                                   "refused unless made with this model and conditioning; 'default' = the one "
                                   "shipped with the default model (models/weights/default-background.h5); 'none' = "
                                   "start empty; empty = gwstream run starts from the shipped one when it was made "
                                   "with this model and conditioning (else empty, with a warning naming the setting "
                                   "that differs), search and replay start empty. A restored state_file comes first")
    save_interval_s: float = setting(60.0, gt=0, unit="s", doc="how often the daemon persists the state file")
    removal_ifar_days: float = setting(30.0, ge=0, unit="days",
                                       doc="hierarchical removal: a zero-lag trigger at least this significant against "
                                           "removal_background is taken for a signal and its windows (both detectors, "
                                           "+- removal_window_s) are kept out of the time-slid background; a "
                                           "reference shorter than this uses its loudest entry; 0 = off")
    removal_window_s: float = setting(2.0, ge=0, unit="s", doc="half-width of the windows kept out around such a "
                                      "trigger's peak window")
    consistency_weight: float = setting(0.0, ge=0, doc="per-detector consistency test (needs a template branch): the "
                                        "statistic loses this much per unit of each detector's residual z (the "
                                        "window's power its best template leaves unexplained, in noise sigmas) "
                                        "above consistency_threshold; part of a background's identity; 0 = off")
    consistency_threshold: float = setting(3.0, ge=0, doc="residual z below which the consistency test costs "
                                           "nothing (in Gaussian noise a window's z is about 1)")
    consistency_slope: float = setting(0.1, ge=0, doc="share of the best template's SNR^2 added to the residual's "
                                       "unit (a cut template misses a few per cent of a loud signal's power)")
    removal_background: str = setting("default", doc="the background that turns removal_ifar_days into a statistic "
                                      "(fixed, so every process and span removes the same triggers): 'default' = "
                                      "the shipped one when made with this model and conditioning (else removal "
                                      "is off, with a warning), or a file (gwstream search --background-out)")


@dataclass(frozen=True)
class OutputConfig:
    """Where the daemon writes, and what makes an alert."""

    dir: str = setting("out/online", doc="trigger archive, alerts file, ranking state, logs")
    far_threshold_hz: float = setting(1.0 / 86400.0, gt=0, unit="Hz", doc="publish an alert when FAR <= this")
    alerts_file: str = setting("alerts.jsonl", doc="every alert appended as one JSON line (relative to dir)")
    archive_dir: str = setting("triggers", doc="every trigger, one HDF5 file per GPS hour (relative to dir)")
    flush_interval_s: float = setting(10.0, gt=0, unit="s", doc="how often the open archive hour is rewritten")
    status_interval_s: float = setting(10.0, gt=0, unit="s",
                                       doc="period of the search status log line and status file (search-status.json)")
    coinc_xml: bool = setting(False, doc="also write <dir>/coinc/<event_id>.xml (LIGO_LW) per alert")
    gracedb_url: str = setting("", doc="upload each alert's coinc.xml to this GraceDB (needs ligo-gracedb); "
                                       "empty = off")


@dataclass(frozen=True)
class FollowupConfig:
    """What follows an alert: the template's SNR series, the coinc.xml, the BAYESTAR sky map, p_astro."""

    enabled: bool = setting(True, doc="compute each alert's template SNR series and sky map in a follow-up worker "
                                      "process and publish them as a second message (topic skymap)")
    skymap: bool = setting(True, doc="run BAYESTAR on each alert's coinc.xml (off: SNR series and coinc.xml only)")
    template_bank: str = setting("", doc="bank CSV (mass1, mass2, spin1z, spin2z) of the model's template branch, "
                                         "in its order; empty = the shipped models/weights/default-bank.csv")
    neighbours: int = setting(32, gt=0, doc="templates re-ranked with full-length waveforms around the branch's best")
    before_s: float = setting(12.0, gt=0, unit="s", doc="whitened data kept before the merger (the longest template)")
    after_s: float = setting(1.5, gt=0, unit="s", doc="whitened data waited for after the merger before the "
                                                      "follow-up starts")
    drain_timeout_s: float = setting(120.0, ge=0, unit="s", doc="at the end of a replay, how long the search "
                                                                 "waits for pending follow-ups before it exits")
    max_pending: int = setting(16, gt=0, doc="follow-ups queued at most; more are dropped (counted, logged) so "
                                             "a burst never holds up the search")
    pastro_file: str = setting("", doc="p_astro signal model (JSON, benchmarks/pastro_calibration.py); empty = the "
                                       "shipped models/weights/default-pastro.json, used when it was made for the "
                                       "model searching (otherwise alerts carry no p_astro)")
    pastro_rate_per_year: float = setting(150.0, ge=0, doc="p_astro's astrophysical rate: BBH signals per year "
                                                           "above network SNR 8 (docs/pastro.md)")


@dataclass(frozen=True)
class ClusterConfig:
    """Where ``gwstream search`` runs when it does not run in one process: a Dask cluster (docs/scaling.md)."""

    backend: str = setting("local", choices=("local", "htcondor", "slurm"),
                           doc="the cluster --workers starts: a LocalCluster on this machine, or a dask-jobqueue "
                               "HTCondorCluster / SLURMCluster submitting worker jobs")
    scheduler: str = setting("", doc="address of a running Dask scheduler (tcp://host:8786); same as --scheduler")
    span_s: float = setting(14400.0, gt=0, unit="s", doc="data each task searches (rounded to model.group_blocks "
                                                        "blocks; at least the slides' reach)")
    psd_lead_s: float = setting(512.0, gt=0, unit="s", doc="conditioning-only lead-in before a span's scoring "
                                                          "lead-in, for its PSD to converge to one process's")
    jobs: int = setting(1, gt=0, doc="jobqueue backends: worker jobs submitted (--workers overrides)")
    cores: int = setting(1, gt=0, doc="jobqueue backends: cores per job (one worker process per core)")
    memory: str = setting("4GiB", doc="jobqueue backends: memory per job")
    disk: str = setting("4GiB", doc="htcondor: scratch disk per job")
    walltime: str = setting("24:00:00", doc="jobqueue backends: wall-time limit per job (HH:MM:SS)")
    queue: str = setting("", doc="slurm: partition; empty = the site's default")
    account: str = setting("", doc="slurm: account to charge; htcondor: accounting group; empty = none")
    job_extra: tuple[str, ...] = setting((), doc="jobqueue backends: extra directives, e.g. "
                                                 "['--constraint=haswell'] (slurm) or ['request_disk = 4GB'] "
                                                 "(htcondor)")
    local_directory: str = setting("", doc="workers' scratch directory; empty = Dask's default")
    retries: int = setting(1, ge=0, doc="times a span that raised is tried again (a killed worker's span is "
                                        "always rescheduled by Dask)")


@dataclass(frozen=True)
class Config:
    """The whole configuration: one section per TOML table."""

    endpoints: EndpointsConfig = dataclasses.field(default_factory=EndpointsConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
    psd: PsdConfig = dataclasses.field(default_factory=PsdConfig)
    whiten: WhitenConfig = dataclasses.field(default_factory=WhitenConfig)
    windows: WindowsConfig = dataclasses.field(default_factory=WindowsConfig)
    simulate: SimulateConfig = dataclasses.field(default_factory=SimulateConfig)
    source: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    followup: FollowupConfig = dataclasses.field(default_factory=FollowupConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)

    def check(self, prefix: str) -> None:
        rate = self.data.analysis_rate_hz
        _need_integer_samples("windows.window_s", self.windows.window_s, rate)
        _need_integer_samples("windows.stride_s", self.windows.stride_s, rate)
        _need_integer_samples("psd.fftlength_s", self.psd.fftlength_s, rate)
        _need_integer_samples("whiten.fduration_s", self.whiten.fduration_s, rate)
        _need_integer_samples("ingest.block_s", self.ingest.block_s, rate)
        steps = self.ranking.slide_step_s / self.windows.stride_s
        if abs(steps - round(steps)) > 1e-9:
            raise ConfigError("ranking.slide_step_s", self.ranking.slide_step_s,
                              f"a whole number of window strides ({self.windows.stride_s} s)")
        if self.ranking.slide_step_s < self.windows.window_s:
            raise ConfigError("ranking.slide_step_s", self.ranking.slide_step_s,
                              f">= windows.window_s = {self.windows.window_s} s (slid windows must not share data)")
        if self.whiten.highpass_hz >= rate / 2:
            raise ConfigError("whiten.highpass_hz", self.whiten.highpass_hz, f"< Nyquist = {rate / 2} Hz")
        if self.psd.fftlength_s < self.whiten.fduration_s:
            raise ConfigError(
                "psd.fftlength_s", self.psd.fftlength_s,
                f">= whiten.fduration_s = {self.whiten.fduration_s} s (the FIR cannot resolve finer than the PSD)",
            )

    def to_dict(self) -> dict:
        return section_to_dict(self)


def state_path(cfg: Config) -> Path:
    """The search's persisted ranking state: ``ranking.state_file``, else ``<output.dir>/ranking-state.h5``."""
    return Path(cfg.ranking.state_file) if cfg.ranking.state_file else Path(cfg.output.dir) / "ranking-state.h5"


def alerts_path(cfg: Config) -> Path:
    """The JSON-lines file every published alert is appended to."""
    return Path(cfg.output.dir) / cfg.output.alerts_file


def archive_path(cfg: Config) -> Path:
    """The directory of the hourly trigger archive files."""
    return Path(cfg.output.dir) / cfg.output.archive_dir


def status_path(cfg: Config) -> Path:
    """The search process's status file (JSON, rewritten atomically): ``<output.dir>/search-status.json``.

    How the search tells other processes (``gwstream demo``, tests, an operator's
    script) where it is: ``state`` is ``running``, ``end_of_stream`` once every
    block before the stream's end has been analysed and its alerts published, or
    ``stopped``; with the counters (``blocks``, ``triggers``, ``alerts``) and the
    GPS end of the last block analysed.
    """
    return Path(cfg.output.dir) / "search-status.json"


def config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML plus dotted-key overrides.

    Parameters
    ----------
    data : mapping
        Parsed TOML.
    overrides : mapping, optional
        ``{"endpoints.frames": "tcp://127.0.0.1:6000", ...}`` applied on top
        (command-line flags of the same name); ``None`` values are ignored.
    """
    merged: dict = _deep_copy(data)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = merged
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(dotted, value, f"[{p}] to be a table")
        node[leaf] = value
    return build_section(Config, merged)


def _deep_copy(data: Mapping[str, Any]) -> dict:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load and validate a TOML configuration file (defaults when ``path`` is None).

    Raises
    ------
    ConfigError
        Unknown key or impossible value (the message names the key).
    FileNotFoundError
        ``path`` does not exist.
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), "<file>", f"valid TOML ({exc})") from None
    return config_from_dict(data, overrides)
