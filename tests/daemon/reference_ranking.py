"""An obviously-correct ranking stage, for the golden test: whole arrays, plain Python loops.

It knows the complete score series in advance and, for each chunk a streaming
stage would receive, replays what that stage may know at the end of the
chunk: windows up to the chunk's end, decisions for windows whose whole
right neighbourhood has arrived (or everything, after the final flush).
"""

import math

from gwstream.daemon.units import NS


def is_peak(stats, valid, i, h):
    if not valid[i]:
        return False
    for j in range(max(0, i - h), i):
        if valid[j] and stats[j] >= stats[i]:
            return False
    for j in range(i + 1, min(len(stats), i + h + 1)):
        if valid[j] and stats[j] > stats[i]:
            return False
    return True


def plateau_middle(stats, valid, i, h, plateau):
    """Twice the grid position of the middle of the valid windows next to peak ``i`` (within ``h``) at >= s - plateau."""
    if plateau <= 0:
        return 2 * i
    a = b = i
    while a - 1 >= max(0, i - h) and valid[a - 1] and stats[a - 1] >= stats[i] - plateau:
        a -= 1
    while b + 1 <= min(len(stats) - 1, i + h) and valid[b + 1] and stats[b + 1] >= stats[i] - plateau:
        b += 1
    return a + b


def reference_triggers(stats, valid, chunk_ends, h, stride_ns, merger_offset_ns, first_index=0, plateau=0.0):
    """Zero-lag triggers ``[(gps_ns, window_ns, stat, far, saturated)]`` of series ``stats[k][i]`` given in chunks.

    ``chunk_ends``: window counts received after each chunk; the last entry is
    the flush (no new windows, every remaining window decided). FAR = (number of slid peaks with stat >= s, decided
    so far, + 1) / (valid slid windows received so far * stride).
    """
    n_rows, n = len(stats), len(stats[0])
    peaks = [[is_peak(stats[k], valid[k], i, h) for i in range(n)] for k in range(n_rows)]
    out = []
    done = 0  # windows decided so far
    for ci, end in enumerate(chunk_ends):
        final = ci == len(chunk_ends) - 1
        decided = end if final else max(done, end - h)
        live = sum(1 for k in range(1, n_rows) for i in range(end) if valid[k][i])
        bg = [stats[k][i] for k in range(1, n_rows) for i in range(decided) if peaks[k][i]]
        for i in range(done, decided):
            if peaks[0][i]:
                s = stats[0][i]
                n_louder = sum(1 for b in bg if b >= s)
                t = live * stride_ns / NS
                far = (n_louder + 1) / t if t > 0 else math.inf
                twice_mid = 2 * first_index + plateau_middle(stats[0], valid[0], i, h, plateau)
                out.append((twice_mid * stride_ns // 2 + merger_offset_ns, (first_index + i) * stride_ns, s, far,
                            n_louder == 0))
        done = decided
    return out
