"""Process helpers: the allocator setting every gwstream program run starts with."""

import subprocess
import sys
import textwrap

import pytest
from gwstream.daemon.proc.spawn import bound_omp_spin, keep_freed_memory

_FAULTS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from gwstream.daemon.proc.spawn import bound_omp_spin, keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f0 = faults()
    for i in range(40):  # what the search does every second of data: several MB-sized arrays alive, then freed
        n = 4096 - 256 * (i % 3)
        a = np.ones((605, n), np.float32)
        b = np.concatenate([a, a[:32]])
        c = np.maximum(a, 2.0)
        del a, b, c
    print(faults() - f0)
""")


def _faults(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(r.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_reuses_freed_blocks_instead_of_faulting_in_fresh_pages():
    """glibc's default hands freed blocks back and faults fresh pages in for the next ones (here ~13,000 faults);
    kept, the blocks freed are reused (~1,700, the heap's first growth)."""
    default, kept = _faults("default"), _faults("keep")
    assert kept * 3 < default, (kept, default)


def test_keep_freed_memory_applies_on_linux_and_can_be_called_again():
    linux = sys.platform.startswith("linux")
    assert keep_freed_memory() is linux
    assert keep_freed_memory() is linux


def test_bound_omp_spin_sets_the_spin_count_unless_the_user_did(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    bound_omp_spin()
    import os

    assert os.environ["GOMP_SPINCOUNT"] == "100000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    bound_omp_spin()
    assert os.environ["GOMP_SPINCOUNT"] == "7"

