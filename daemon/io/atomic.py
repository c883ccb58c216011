"""The daemon's one atomic file writer.

Every file the daemon writes (trigger archives, backgrounds, ranking state,
coinc XML, GWF frames, injection tables, simulated strain, template banks,
training sets) goes through :func:`atomic_path`: the writer fills a temporary
file beside the destination, which is renamed over it only once the write has
succeeded. A reader (a file source watching a directory, a restarted daemon,
an analysis run by another account) therefore sees the old file or the new
one, never half of one, and a failed write leaves nothing behind.

The models layer, which imports nothing of the daemon, has its own writer for
checkpoints (:func:`gwstream.models.checkpoint.atomic_path`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "new_file_mode"]


def new_file_mode() -> int:
    """Permission bits ``open()`` gives a new file under the process's umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: mode of every file written here: mkstemp's 0600 would hide archives and
#: backgrounds from the accounts that read them
FILE_MODE = new_file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    Parameters
    ----------
    path : str or path-like
        Destination; its folder must exist.
    suffix : str
        End of the temporary file's name, for writers that choose a format
        (or append an extension) from it, e.g. ``".tmp.npz"`` for
        :func:`numpy.savez`. The name starts with ``.<name of path>.``, so
        directory scans that skip hidden files never pick it up.

    Yields
    ------
    str
        The temporary path to write to.

    Notes
    -----
    The rename is :func:`os.replace`, atomic on one file system; the file gets
    :data:`FILE_MODE`, the mode ``open()`` would have given it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
