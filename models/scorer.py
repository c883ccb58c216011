"""Batched scoring of whitened windows, checkpoints and deployable exports.

A checkpoint is a plain dictionary written with ``torch.save`` and read back
with ``torch.load(weights_only=True)`` (no arbitrary pickle)::

    {"name": "factorized", "hparams": {...}, "state_dict": {...}, "meta": {...}}

``name`` and ``hparams`` rebuild the network through
:func:`gwstream.models.networks.build_model`; ``meta`` is free JSON-like
information (training data, date, version). The checkpoint file's SHA-256
identifies the model in alerts.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gwstream.models.checkpoint import atomic_path, check_layout  # noqa: F401 - atomic_path re-exported
from gwstream.models.networks import GWNet, build_model
from torch import nn

__all__ = ["Scorer", "save_checkpoint", "load_checkpoint", "load_exported", "EXPORT_KINDS"]

EXPORT_KINDS = ("torchscript", "export")


def _packed(model: GWNet, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state as stored: a network may store some weights compactly (``packed_state``/``unpacked_state``)."""
    return model.packed_state(state) if hasattr(model, "packed_state") else state


def save_checkpoint(model: GWNet, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a weights-only checkpoint, atomically.

    Parameters
    ----------
    model : GWNet
        A network built by :func:`~gwstream.models.networks.build_model`.
    path : path-like
        Destination; written to a temporary file in the same folder, then
        renamed over ``path`` with :func:`os.replace`, so readers never see a
        partial file.
    meta : dict, optional
        JSON-serialisable information stored with the weights (stored as its
        JSON round trip: tuples become lists, numpy scalars Python numbers).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    meta = {} if meta is None else meta
    try:
        # JSON round trip: plain types only (a numpy float64 would make the
        # weights-only load refuse the file; tuples come back as lists).
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta {meta!r} is not JSON-serialisable: {exc}") from exc
    payload = {
        "name": model.name,
        "hparams": copy.deepcopy(model.hparams),
        "state_dict": _packed(model, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}),
        "meta": meta,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[GWNet, dict[str, Any], str]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        Checkpoint file.

    Returns
    -------
    model : GWNet
        The rebuilt network with its weights, in eval mode, on the CPU.
    meta : dict
        The stored ``meta`` (empty when absent).
    sha256 : str
        Hex SHA-256 of the file's bytes (exactly the bytes that were loaded).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a readable checkpoint, lacks a key, names an
        unknown network, or its weights do not fit the network (missing,
        unexpected or wrongly shaped tensors).
    """
    path = Path(path)
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    try:
        ckpt = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(exc).__name__}: {exc})") from exc
    name, hparams, state = check_layout(path, ckpt)
    try:
        model = build_model(name, **hparams)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    expected = model.state_dict()
    problems = []
    if hasattr(model, "unpacked_state"):
        try:
            state = model.unpacked_state(state)
        except ValueError as exc:
            raise ValueError(f"{path}: weights do not fit model {name!r} {hparams}: {exc}") from exc
    if absent := sorted(set(expected) - set(state)):
        problems.append(f"missing tensors {absent}")
    if extra := sorted(set(state) - set(expected)):
        problems.append(f"unexpected tensors {extra}")
    for key in sorted(set(expected) & set(state)):
        got = state[key]
        if not torch.is_tensor(got) or got.shape != expected[key].shape:
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            problems.append(f"{key} has shape {shape}, expected {tuple(expected[key].shape)}")
    if problems:
        raise ValueError(f"{path}: weights do not fit model {name!r} {hparams}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    meta = ckpt.get("meta") or {}
    return model.eval(), dict(meta), sha


def load_exported(path: str | os.PathLike, kind: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Load an artifact written by :meth:`Scorer.export`.

    Parameters
    ----------
    path : path-like
        The artifact.
    kind : {"torchscript", "export"}, optional
        Its format; by default ``"export"`` for a ``.pt2`` suffix, else ``"torchscript"``.
    device : str or torch.device
        Where a TorchScript module is mapped (``torch.export`` programs load on the CPU).

    Returns
    -------
    torch.nn.Module
        A callable ``windows [B, 2, N] -> logits [B]``.
    """
    path = Path(path)
    kind = kind or ("export" if path.suffix == ".pt2" else "torchscript")
    if kind == "torchscript":
        return torch.jit.load(str(path), map_location=device)
    if kind == "export":
        return torch.export.load(str(path)).module()
    raise ValueError(f"export kind {kind!r}, expected one of {EXPORT_KINDS}")


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


class Scorer:
    """Score batches of whitened two-detector windows with one network.

    Parameters
    ----------
    model : GWNet
        A network from :func:`~gwstream.models.networks.build_model`; put in
        eval mode and moved to ``device``.
    device : str or torch.device
        ``"auto"`` (CUDA when available, CPU otherwise), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    batch_size : int
        Windows per forward pass.
    threads : int, optional
        Intra-op CPU threads used while scoring (``torch.set_num_threads``,
        set for the call and restored after); ``None`` keeps torch's setting.

    Attributes
    ----------
    model : GWNet
    device : torch.device
    batch_size : int
    threads : int or None
    meta : dict
        Checkpoint ``meta`` (empty for an in-memory model).
    path : pathlib.Path or None
        Checkpoint file, when built by :meth:`from_checkpoint`.

    Notes
    -----
    On the CPU, the same weights, input, batch size and thread count give
    bit-identical scores run to run; other thread counts agree to float
    rounding (~1e-6 relative).
    """

    def __init__(
        self,
        model: GWNet,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 1024,
        threads: int | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size = {batch_size!r}, expected an integer >= 1")
        if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
            raise ValueError(f"threads = {threads!r}, expected None or an integer >= 1")
        for attr in ("name", "n_ifos", "window_samples", "sample_rate_hz", "joint"):
            if not hasattr(model, attr):
                raise ValueError(f"model {type(model).__name__} lacks the metadata attribute {attr!r}")
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.threads = None if threads is None else int(threads)
        self.meta: dict[str, Any] = {}
        self.path: Path | None = None
        self._sha256: str | None = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        batch_size: int = 1024,
        threads: int | None = None,
    ) -> Scorer:
        """Build a scorer from a checkpoint file (see :func:`load_checkpoint` for the errors)."""
        model, meta, sha = load_checkpoint(path)
        scorer = cls(model, device=device, batch_size=batch_size, threads=threads)
        scorer.meta, scorer.path, scorer._sha256 = meta, Path(path), sha
        return scorer

    @property
    def name(self) -> str:
        """Registry name of the network."""
        return self.model.name

    @property
    def sha256(self) -> str | None:
        """Hex SHA-256 of the checkpoint file, or ``None`` for an in-memory model."""
        return self._sha256

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        before = torch.get_num_threads()
        if self.threads is None or self.threads == before:
            yield
            return
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Context for direct use of :attr:`model`: the scorer's thread count and ``torch.inference_mode``."""
        with self._threads(), torch.inference_mode():
            yield

    def score(self, windows: np.ndarray) -> np.ndarray:
        """Logits of a batch of whitened windows.

        Parameters
        ----------
        windows : numpy.ndarray, shape (B, n_ifos, window_samples)
            Whitened strain, H1 then L1, float32 (other float dtypes are cast).

        Returns
        -------
        numpy.ndarray, shape (B,), float32
            Unbounded ranking statistic, larger = more signal-like.
        """
        m = self.model
        if not isinstance(windows, np.ndarray) or windows.ndim != 3 or windows.shape[1:] != (m.n_ifos, m.window_samples):
            shape = getattr(windows, "shape", type(windows).__name__)
            raise ValueError(f"windows have shape {shape}, expected a numpy array [B, {m.n_ifos}, {m.window_samples}]")
        x = np.ascontiguousarray(windows, dtype=np.float32)
        out = np.empty(x.shape[0], dtype=np.float32)
        with self._threads(), torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
                out[i : i + xb.shape[0]] = m(xb).float().cpu().numpy()
        return out

    # -------------------------------------------------- factorized stream path
    def _require_factorized(self) -> None:
        if self.model.joint:
            raise ValueError(f"model {self.model.name!r} is joint; the stream path needs a factorized model")

    def encode_stream(self, stream: np.ndarray) -> torch.Tensor:
        """Encoder features of a contiguous whitened stretch (factorized models only).

        Parameters
        ----------
        stream : numpy.ndarray, shape (n_ifos, L)
            Whitened H1 and L1 strain; windows to be scored later must start
            on multiples of ``model.stride_samples`` from its first sample.

        Returns
        -------
        torch.Tensor, shape (n_ifos, C, model.n_features(L))
            Features on :attr:`device`, to pass to :meth:`head_windows`.
        """
        self._require_factorized()
        x = torch.from_numpy(np.ascontiguousarray(stream, dtype=np.float32))
        with self._threads(), torch.inference_mode():
            return self.model.encode_stream(x.to(self.device))

    def head_windows(
        self,
        feats: torch.Tensor,
        starts: Sequence[int] | np.ndarray,
        slide_steps: int | Sequence[int] | np.ndarray = 0,
        *,
        wrap: bool = False,
    ) -> np.ndarray:
        """Logits of windows (and time slides) from cached features; see
        :meth:`gwstream.models.factorized.FactorizedNet.head_windows`.

        Returns
        -------
        numpy.ndarray, float32, shape (n_windows,) or (K, n_windows)
        """
        self._require_factorized()
        with self._threads(), torch.inference_mode():
            out = self.model.head_windows(feats, starts, slide_steps, wrap=wrap)
        return out.float().cpu().numpy()

    # ------------------------------------------------------------------ export
    def export(self, path: str | os.PathLike, kind: str = "torchscript") -> Path:
        """Write a deployable artifact of the network's ``forward``.

        Parameters
        ----------
        path : path-like
            Destination (``.pt2`` is the convention for ``kind="export"``,
            ``.ts`` for TorchScript). Written atomically.
        kind : {"torchscript", "export"}
            ``torch.jit.trace`` + ``torch.jit.save``, or ``torch.export.export``
            (dynamic batch dimension) + ``torch.export.save``.

        Returns
        -------
        pathlib.Path
            ``path``; load it back with :func:`load_exported`.
        """
        if kind not in EXPORT_KINDS:
            raise ValueError(f"export kind {kind!r}, expected one of {EXPORT_KINDS}")
        m = copy.deepcopy(self.model).cpu().eval()
        example = torch.zeros(2, m.n_ifos, m.window_samples)
        path = Path(path)
        with atomic_path(path, suffix=path.suffix) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the static shape check
            if kind == "torchscript":
                with torch.no_grad():
                    torch.jit.save(torch.jit.trace(m, example), tmp)
            else:
                batch = torch.export.Dim("batch", min=1, max=1 << 20)
                ep = torch.export.export(m, (example,), dynamic_shapes=({0: batch},))
                torch.export.save(ep, tmp)
        return path
