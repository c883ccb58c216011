"""Checkpoint facts without torch: a checkpoint's name, hyper-parameters, meta, tensor shapes and SHA-256.

``gwstream replay`` checks the model (whitening phase, initial background)
before it starts any process, without importing torch (which would cost the
parent process more than the checks themselves). A file written
by ``torch.save`` is a zip archive holding one pickle (``*/data.pkl``) and the
raw tensor storages; this module reads the pickle with an unpickler that
knows only the handful of torch globals a weights-only state dict uses
(tensors come back as their shapes, storages are never read) and refuses
every other global, as ``torch.load(weights_only=True)`` does.

:func:`atomic_path` lives here too: the models layer's writer of checkpoints
and exports, which should not need torch to. The daemon, which the models
layer does not import, has its own for archives and backgrounds
(``gwstream.daemon.io.atomic``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CheckpointInfo", "read_checkpoint_info", "check_layout", "atomic_path", "REQUIRED_KEYS", "NETWORK_NAMES"]

#: keys every checkpoint holds (``meta`` is optional)
REQUIRED_KEYS = ("name", "hparams", "state_dict")
#: networks :func:`gwstream.models.networks.build_model` knows
NETWORK_NAMES = ("baseline", "resnet", "factorized")


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _new_file_mode()  # what open() would give a new file (mkstemp's are 0600)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    Readers never see a half-written file under ``path`` (``os.replace`` is atomic
    on one file system).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # archives and backgrounds are read by other accounts too
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read without torch.

    Attributes
    ----------
    name : str
        Network name (one of :data:`NETWORK_NAMES`).
    hparams, meta : dict
        As saved (``meta`` empty when absent).
    shapes : dict
        Tensor name -> shape, for every entry of the state dict.
    sha256 : str
        Hex SHA-256 of the file's bytes (the model's identity in alerts and backgrounds).
    """

    name: str
    hparams: dict[str, Any]
    meta: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    sha256: str


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, *args):  # noqa: ARG001 - torch._utils signature
    return _Tensor(tuple(int(n) for n in size))


def _rebuild_parameter(data, *args):  # noqa: ARG001
    return data


class _Storage:
    """Stands for a torch storage class in a persistent id; never instantiated."""


#: the globals a weights-only torch state dict pickle may name
_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_STORAGES = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
             "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "UntypedStorage"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGES:
            return _Storage
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights-only checkpoint")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        return None  # storages are not read: shapes are all this module reports


def check_layout(path: str | os.PathLike, obj: Any) -> tuple[Any, dict, dict]:
    """``(name, hparams, state_dict)`` of an unpickled checkpoint; :class:`ValueError` naming what is missing.

    The layout check :func:`read_checkpoint_info` and
    :func:`gwstream.models.scorer.load_checkpoint` share.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: checkpoint holds a {type(obj).__name__}, expected a dict with keys {REQUIRED_KEYS}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks key(s) {missing}, expected {list(REQUIRED_KEYS)} (+ optional 'meta')")
    hparams, state = obj["hparams"], obj["state_dict"]
    if not isinstance(hparams, dict) or not isinstance(state, dict):
        raise ValueError(f"{path}: 'hparams' and 'state_dict' must be dicts, got {type(hparams).__name__} and "
                         f"{type(state).__name__}")
    return obj["name"], hparams, state


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Name, hyper-parameters, meta, tensor shapes and SHA-256 of a checkpoint, without importing torch.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a ``torch.save`` zip archive of a weights-only
        checkpoint dict with the keys :data:`REQUIRED_KEYS` and a known network name.
        Whether the weights fit the network is checked where the network is
        built (:func:`gwstream.models.scorer.load_checkpoint`).
    """
    path = Path(path)
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise ValueError(f"{len(pkl)} data.pkl entries, expected 1")
            obj = _Unpickler(io.BytesIO(zf.read(pkl[0]))).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable weights-only checkpoint ({type(exc).__name__}: {exc})") from None
    name, hparams, state = check_layout(path, obj)
    if name not in NETWORK_NAMES:
        raise ValueError(f"{path}: unknown network {name!r}, expected one of {list(NETWORK_NAMES)}")
    bad = sorted(k for k, v in state.items() if not isinstance(v, _Tensor))
    if bad:
        raise ValueError(f"{path}: state_dict entries {bad} are not tensors")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: 'meta' is a {type(meta).__name__}, expected a dict")
    return CheckpointInfo(str(name), dict(hparams), dict(meta), {k: v.shape for k, v in state.items()}, sha)
