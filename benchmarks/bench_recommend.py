"""Speed of `pdplan recommend`: wall time of the default CLI call (interpreter start included),
candidates evaluated per second by the search, and a 10 x 7 `whatif` grid (one and all
workers). Prints timings; not part of the test run.

    python benchmarks/bench_recommend.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def compile_package() -> None:
    """Byte-compile the package as ``pip install .`` does, so that the CLI timings measure what
    an installed copy runs, not the compiling of sources whose bytecode is stale or was never
    written (an editable install under PYTHONDONTWRITEBYTECODE compiles every module on every
    start: about 0.1 s)."""
    import os
    from pathlib import Path

    import planner

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(planner.__file__).parent)],
                   check=True, stdout=subprocess.DEVNULL, env=env)


def cli_wall(runs: int) -> list[float]:
    exe = shutil.which("pdplan")
    cmd = [exe] if exe else [sys.executable, "-m", "planner"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd + ["recommend", "--qps", "80", "--ttft-slo", "200ms"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def search_rate(runs: int) -> tuple[float, int, float]:
    from planner.api import default_inputs
    from planner.optimize import search

    inp = default_inputs(qps=80, ttft_slo=0.2)
    inp.objective = "gpus"
    search(inp, ["h100-sxm"])  # warm caches and imports
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        sr = search(inp, ["h100-sxm", "h200", "b200"])
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, sr.evaluated)
    return best[0], best[1], best[1] / best[0]


WHATIF = ["whatif", "--vary", "qps=5,10,20,30,40,60,80,100,120,160",
          "--vary", "isl=256,512,1024,2048,4096,8192,16384"]


def whatif_wall(workers: str | None) -> float:
    import os

    exe = shutil.which("pdplan")
    cmd = [exe] if exe else [sys.executable, "-m", "planner"]
    env = dict(os.environ)
    if workers:
        env["PDPLAN_WORKERS"] = workers
    t0 = time.perf_counter()
    subprocess.run(cmd + WHATIF, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    compile_package()
    t = cli_wall(a.runs)
    print(f"pdplan recommend --qps 80 --ttft-slo 200ms: median {statistics.median(t):.3f} s, "
          f"min {min(t):.3f} s over {a.runs} runs (target <= 0.5 s)")
    dt, n, rate = search_rate(a.runs)
    print(f"search over 3 GPU types: {n} candidates in {dt:.3f} s = {rate:,.0f} candidates/s (target >= 200,000)")
    print(f"whatif 10 x 7 grid: {whatif_wall(None):.2f} s (all CPUs), {whatif_wall('1'):.2f} s "
          "(PDPLAN_WORKERS=1) (target <= 5 s on 2 cores)")


if __name__ == "__main__":
    main()
