"""Start-up time of ``pdplan --help`` (target: median under 0.3 s).

Runs ``python -m planner --help`` in a fresh interpreter ``--runs`` times (10 by default) and
prints the median wall time. ``--help`` must not import numpy, scipy or rich; a regression there
shows up here first.

    python benchmarks/bench_help.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 0.3


def time_help(runs: int) -> list[float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "planner", "--help"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"pdplan --help failed (exit {out.returncode}): {out.stderr.strip()}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    times = time_help(max(1, args.runs))
    med = statistics.median(times)
    verdict = "ok" if med < TARGET_S else "SLOW"
    print(f"pdplan --help: median {med:.3f} s over {len(times)} runs "
          f"(min {min(times):.3f} s, max {max(times):.3f} s; target < {TARGET_S} s) {verdict}")


if __name__ == "__main__":
    main()
