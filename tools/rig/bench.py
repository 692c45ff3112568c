#!/usr/bin/env python3
"""
Measure how long the namespace test hosts take to come up and go down
(docs/testing.md, "The test rig"). Run as root: .venv/bin/python bin/bench-rig [N]
"""

import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rig.hosts import Rig  # noqa: E402


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    timings = {"odoo host up": [], "outside host up": [], "rig down": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as workdir:
            rig = Rig(workdir).create()
            try:
                start = time.perf_counter()
                rig.odoo_host()
                timings["odoo host up"].append(time.perf_counter() - start)
                start = time.perf_counter()
                rig.outside_host()
                timings["outside host up"].append(time.perf_counter() - start)
            finally:
                start = time.perf_counter()
                rig.destroy()
                timings["rig down"].append(time.perf_counter() - start)
    print(f"{rounds} rounds")
    for name, values in timings.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        median = statistics.median(values)
        print(f"{name:16} median {median * 1000:6.0f} ms   p95 {p95 * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
