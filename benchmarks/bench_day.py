"""Speed of a plan for a day (issue 15's target: a 24-period diurnal profile plans in under 2 s on
2 cores): `pdplan recommend --load-profile diurnal:...` end to end (interpreter start included),
planner.api.plan_day in a warm process, with the searches on every CPU and on one
(PDPLAN_WORKERS=1), and the simulated day. Prints timings; not part of the test run.

    python benchmarks/bench_day.py [--runs 5] [--simulate]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROFILE = "diurnal:peak=120,trough=30,peak_hour=14"
ARGS = ["recommend", "--load-profile", PROFILE, "--ttft-slo", "200ms"]


def _pdplan() -> list[str]:
    """This interpreter's pdplan (a ``pdplan`` on PATH may be another installation)."""
    exe = Path(sys.executable).with_name("pdplan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "planner"]


def cli_wall(runs: int, workers: str | None = None) -> list[float]:
    cmd = _pdplan()
    env = dict(os.environ)
    if workers:
        env["PDPLAN_WORKERS"] = workers
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd + ARGS, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
    return times


def plan_wall(runs: int) -> tuple[list[float], object]:
    from planner import api

    inp = api.default_inputs(qps=120.0, ttft_slo=0.2)
    prof = api.load_profile(PROFILE)
    api.plan_day(inp, prof, ["h100-sxm"])  # catalog, step models, imports
    times, day = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        day = api.plan_day(inp, prof, ["h100-sxm"])
        times.append(time.perf_counter() - t0)
    return times, day


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--simulate", action="store_true", help="also time the simulated day")
    a = ap.parse_args()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    print(f"{cpus} CPUs, load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else f"{cpus} CPUs")
    for workers, what in ((None, "all CPUs"), ("1", "PDPLAN_WORKERS=1")):
        t = cli_wall(a.runs, workers)
        print(f"pdplan {' '.join(ARGS)} ({what}): median {statistics.median(t):.2f} s, min {min(t):.2f} s "
              f"over {a.runs} runs (target < 2 s)")
    t, day = plan_wall(a.runs)
    print(f"api.plan_day, warm process: median {statistics.median(t):.2f} s, min {min(t):.2f} s "
          f"({day.searches} searches, {day.evaluated:,} candidates)")
    if a.simulate:
        from planner import api

        t0 = time.perf_counter()
        sim = api.simulate_day(day.inputs, day.profile, [p.deployment for p in day.periods], day.scaling)
        print(f"api.simulate_day: {time.perf_counter() - t0:.1f} s for {sim.simulated:,} simulated requests; "
              f"attainment predicted {day.attainment * 100:.1f}%, simulated {sim.attainment * 100:.1f}%")


if __name__ == "__main__":
    main()
