"""Compare two ``gwstream search`` outputs: trigger archives and, optionally, backgrounds.

Used to show that a change of code layout changes no result: run the same
search on the same input before and after, then::

    python benchmarks/compare_search.py before/triggers.h5 after/triggers.h5 \
        --background before/bg.h5 after/bg.h5

Every trigger column and the analysed segments are compared bit for bit; the
archives' attributes are compared except the run's own (wall time, speed,
input path). Backgrounds are compared dataset by dataset and attribute by
attribute. Exit status 0 when identical, 1 otherwise, with what differs.
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np

RUN_ATTRS = {"wall_s", "speed_x_real_time", "input"}


def _datasets(f: h5py.File) -> dict[str, np.ndarray]:
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _attrs(f: h5py.File) -> dict[str, object]:
    out = {}

    def visit(name, obj):
        for k, v in obj.attrs.items():
            out[f"{name}:{k}"] = v

    for k, v in f.attrs.items():
        out[f"/:{k}"] = v
    f.visititems(visit)
    return out


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare(a_path: str, b_path: str, ignore: set[str]) -> list[str]:
    """What differs between two HDF5 files (empty when identical)."""
    diffs = []
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        da, db = _datasets(a), _datasets(b)
        for k in sorted(set(da) | set(db)):
            if k not in da or k not in db:
                diffs.append(f"dataset {k}: only in {'the first' if k in da else 'the second'}")
            elif not _same(da[k], db[k]):
                diffs.append(f"dataset {k}: values differ ({np.shape(da[k])} vs {np.shape(db[k])})")
        aa, ab = _attrs(a), _attrs(b)
        for k in sorted(set(aa) | set(ab)):
            if k.split(":", 1)[1] in ignore:
                continue
            if k not in aa or k not in ab:
                diffs.append(f"attribute {k}: only in {'the first' if k in aa else 'the second'}")
            elif not _same(aa[k], ab[k]):
                diffs.append(f"attribute {k}: {aa[k]!r} vs {ab[k]!r}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--background", nargs=2, metavar=("FIRST", "SECOND"), help="two backgrounds to compare too")
    args = p.parse_args(argv)
    diffs = compare(args.first, args.second, RUN_ATTRS)
    with h5py.File(args.first, "r") as f:
        n = f["time"].shape[0]
    print(f"triggers: {n} in {args.first}; {'identical' if not diffs else f'{len(diffs)} differences'}")
    if args.background:
        bd = compare(*args.background, set())
        print(f"background: {'identical' if not bd else f'{len(bd)} differences'}")
        diffs += bd
    for d in diffs:
        print("  " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
