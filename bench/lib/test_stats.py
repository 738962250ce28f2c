# SPDX-License-Identifier: MIT
"""bench/lib/stats.py on known inputs; TAP output."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stats  # noqa: E402

results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond), detail))


# Medians: odd, even, unsorted, one value; an empty sequence is refused.
check("median odd", stats.median([5, 1, 3]) == 3)
check("median even", stats.median([4, 1, 3, 2]) == 2.5)
check("median one", stats.median([7.5]) == 7.5)
try:
    stats.median([])
    check("median empty raises", False)
except ValueError:
    check("median empty raises", True)

# Nearest-rank quantiles.
s = list(range(1, 101))
check("quantile 0.5 of 1..100", stats.quantile(s, 0.5) == 50)
check("quantile 0.99 of 1..100", stats.quantile(s, 0.99) == 99)
check("quantile 0.025 of 1..100", stats.quantile(s, 0.025) == 3)

# A constant sample: the interval is that constant.
check("ci of a constant", stats.bootstrap_ci([3.0] * 7) == (3.0, 3.0))
check("ci of one value", stats.bootstrap_ci([2.0]) == (2.0, 2.0))

# 1..5: P(resampled median <= 1) = P(at least 3 of 5 draws are 1) = 0.0579 > 0.025,
# so the 2.5 % bound is 1 and by symmetry the 97.5 % bound is 5.
check("ci of 1..5", stats.bootstrap_ci([1, 2, 3, 4, 5]) == (1, 5),
      stats.bootstrap_ci([1, 2, 3, 4, 5]))
# The resampled medians follow the exact law: P(median <= 2) = P(Bin(5, 0.4) >= 3) = 0.31744.
d = stats.bootstrap_distribution([1, 2, 3, 4, 5])
share = sum(1 for v in d if v <= 2) / len(d)
check("bootstrap distribution of 1..5", abs(share - 0.31744) < 0.015, share)
check("resamples", len(d) == stats.RESAMPLES)
# Seeded: the same interval every time; another seed, another draw.
xs = [0.91, 1.02, 1.10, 0.97, 1.31, 1.05, 0.88, 1.20, 1.01]
check("seeded", stats.bootstrap_ci(xs) == stats.bootstrap_ci(xs))
check("seed matters", stats.bootstrap_distribution(xs, seed=1) != stats.bootstrap_distribution(xs, seed=2))
lo, hi = stats.bootstrap_ci(xs)
check("interval holds the median", lo <= stats.median(xs) <= hi and lo < hi, (lo, hi))
check("interval inside the sample", min(xs) <= lo and hi <= max(xs), (lo, hi))
# A wide interval for a noisy sample, a narrow one for a tight one.
wide = stats.bootstrap_ci([0.5, 2.0, 0.7, 1.8, 1.0])
tight = stats.bootstrap_ci([1.00, 1.01, 0.99, 1.00, 1.02])
check("noise widens", (wide[1] - wide[0]) > 10 * (tight[1] - tight[0]), (wide, tight))

# Paired ratios: pairs with a zero or missing denominator are left out.
check("paired ratios", stats.paired_ratios([2, 3, 4], [1, 0, 2]) == [2.0, 2.0])
check("paired ratios missing", stats.paired_ratios([None, 6], [1, 3]) == [2.0])
r = stats.ratio_summary([10, 20, 30, 40, 50], [5, 10, 10, 20, 25])
check("ratio summary", r["median"] == 2.0 and r["n"] == 5 and r["lo"] == 2.0 and r["hi"] == 3.0, r)
check("ratio summary empty", stats.ratio_summary([1], [0]) is None)

print(f"1..{len(results)}")
for i, (name, ok, detail) in enumerate(results, 1):
    print(f"{'ok' if ok else 'not ok'} {i} - {name}" + ("" if ok else f"  # got {detail}"))
sys.exit(0 if all(ok for _, ok, _ in results) else 1)
