"""Speed of the discrete-event simulator: requests simulated per second of wall time for the
unified, chunked and disaggregated policies on the default scenario (llama-3.1-70b on h100-sxm,
ISL 2048, OSL 256). Prints timings; not part of the test run.

    python benchmarks/bench_simulate.py [--requests 20000] [--runs 3] [--seed 0]

The target is at least 20,000 simulated requests per second on each policy. The best of
``--runs`` runs is reported (the machine may be shared); the median is shown beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_REQ_PER_S = 20_000


def scenarios():
    from planner.api import default_inputs
    from planner.serving.common import Deployment, Pool

    gpu = "h100-sxm"
    return [
        ("unified 4xtp8 @ 8 QPS", default_inputs(qps=8.0),
         Deployment("unified", (Pool("unified", gpu, 4, 8),))),
        ("chunked 4xtp8 C=512 @ 8 QPS", default_inputs(qps=8.0),
         Deployment("chunked", (Pool("unified", gpu, 4, 8),), chunk_size=512)),
        ("disaggregated 6xtp4 + 2xtp8 @ 20 QPS", default_inputs(qps=20.0),
         Deployment("disaggregated", (Pool("prefill", gpu, 6, 4), Pool("decode", gpu, 2, 8)))),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from planner.sim import simulate

    print(f"{'scenario':40} {'requests':>8} {'wall s':>8} {'req/s best':>11} {'req/s median':>13}  "
          f"{'stable':>6} {'TTFT p90 ms':>11} {'TPOT p90 ms':>11}")
    ok = True
    for name, inp, dep in scenarios():
        simulate(inp, dep, 500, seed=args.seed)  # imports and table set-up
        walls, res = [], None
        for _ in range(max(args.runs, 1)):
            res = simulate(inp, dep, args.requests, seed=args.seed)
            walls.append(res.wall_s)
        best, med = min(walls), statistics.median(walls)
        rate = args.requests / best
        ok &= rate >= TARGET_REQ_PER_S
        print(f"{name:40} {args.requests:8d} {best:8.3f} {rate:11,.0f} {args.requests / med:13,.0f}  "
              f"{'yes' if res.stable else 'no':>6} {res.ttft['p90'] * 1e3:11.1f} {res.tpot['p90'] * 1e3:11.2f}")
    print(f"target: >= {TARGET_REQ_PER_S:,} requests/s per policy: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
