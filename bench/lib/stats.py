# SPDX-License-Identifier: MIT
"""Statistics for bench/run: medians, paired ratios and percentile-bootstrap
intervals. Deterministic: the bootstrap draws from its own seeded generator."""

import math
import random

RESAMPLES = 10_000
SEED = 20261202


def median(xs):
    """The median of a non-empty sequence (the mean of the middle two for an even count)."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError("median of an empty sequence")
    mid = n // 2
    return s[mid] if n % 2 else (s[mid - 1] + s[mid]) / 2


def quantile(sorted_xs, q):
    """The q-quantile (0..1) of sorted values, by the nearest rank (no interpolation)."""
    if not sorted_xs:
        raise ValueError("quantile of an empty sequence")
    k = max(0, math.ceil(q * len(sorted_xs)) - 1)
    return sorted_xs[min(k, len(sorted_xs) - 1)]


def bootstrap_distribution(xs, stat=median, resamples=RESAMPLES, seed=SEED):
    """The sorted values of stat over `resamples` resamples of xs with replacement."""
    xs = list(xs)
    if not xs:
        raise ValueError("bootstrap of an empty sequence")
    rng = random.Random(seed)
    n = len(xs)
    return sorted(stat([xs[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))


def bootstrap_ci(xs, stat=median, level=0.95, resamples=RESAMPLES, seed=SEED):
    """The percentile-bootstrap interval (lo, hi) of stat(xs) at the given level."""
    d = bootstrap_distribution(xs, stat, resamples, seed)
    tail = (1 - level) / 2
    return quantile(d, tail), quantile(d, 1 - tail)


def paired_ratios(a, b):
    """a[i] / b[i] for each pair in which both are positive numbers."""
    if len(a) != len(b):
        raise ValueError("pairs of unequal length")
    return [x / y for x, y in zip(a, b) if x is not None and y is not None and y > 0 and x >= 0]


def ratio_summary(a, b):
    """The median of the per-pair ratios a/b and its bootstrap 95 % interval, or None."""
    r = paired_ratios(a, b)
    if not r:
        return None
    lo, hi = bootstrap_ci(r)
    return {"median": median(r), "lo": lo, "hi": hi, "n": len(r), "ratios": r}
