# SPDX-License-Identifier: MIT
"""The short version of tests/chaos/hostile.py (see there): slowloris, slow
bodies, clients that never read, a flood of invalid requests, 2,000 idle
connections and connections past TGRING_MAX_CONNECTIONS, each for a few
seconds with the header, body and response timeouts lowered to 1.5 s. For
each, tgring's descriptors and resident memory stay bounded and come back
after, the defences fire, and a light valid load keeps being answered with
its p99 within a generous bound of its quiet value."""

import os
import sys

import harness

sys.path.insert(0, os.path.join(harness.SRC, "tests", "chaos"))
import hostile  # noqa: E402

if __name__ == "__main__":
    harness.run(lambda h: hostile.run_hostile(h, hostile.SHORT))
