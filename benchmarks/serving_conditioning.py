"""How sensitive each published serving operating point is to the rate (and so to capacity).

For every operating point of ``pdplan validate --set serving`` predicted stable, the model's
elasticity of mean TTFT and mean TPOT to the request rate, ``d ln(metric) / d ln(qps)``, from
the plan at the published rate and at 2% more. Near saturation a compute-bound lane's iteration
is ``T = a / (1 - rho)``: an elasticity of 10 means a 1% error in capacity moves the latency by
about 10%, so the point's latency error measures the capacity error amplified that much. The
errors of the serving set are then printed per elasticity bucket (median absolute, signed).

    python benchmarks/serving_conditioning.py
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planner import api  # noqa: E402
from planner import validate as v  # noqa: E402
from planner.catalog import load_catalog  # noqa: E402

BUCKETS = ((0.0, 1.0), (1.0, 3.0), (3.0, 10.0), (10.0, math.inf))
STEP = 1.02


def main() -> None:
    cat = load_catalog()
    rep = v.run(cat, dataset="serving")
    extra = v.load_rows()[1]
    elastic: dict[str, dict[str, float]] = {}
    for r in rep.rows:
        p = r.shape["point"]
        if p in elastic or r.shape["load"] != "poisson" or not r.included:
            continue
        plan = v.serving_plan(r, cat, extra)
        if not plan.metrics.stable:
            continue
        wl = plan.inputs.workload
        up = api.estimate(replace(plan.inputs, workload=replace(wl, qps=wl.qps * STEP)), plan.deployment,
                          with_headroom=False)
        e = {}
        for what in ("ttft", "tpot"):
            a, b = plan.metrics.__dict__[what]["mean"], up.metrics.__dict__[what]["mean"]
            e[what] = (math.log(b / a) / math.log(STEP)) if up.metrics.stable and a > 0 else math.inf
        elastic[p] = e
    print(f"{'kind':18s} {'elasticity':>12s} {'n':>4s} {'median |err|':>13s} {'median err':>11s}")
    for kind, what in (("serving_ttft_mean", "ttft"), ("serving_tpot_mean", "tpot")):
        rows = [r for r in rep.rows if r.kind == kind and r.included and np.isfinite(r.error)
                and r.shape["point"] in elastic]
        for lo, hi in BUCKETS:
            sel = [r.error for r in rows if lo <= elastic[r.shape["point"]][what] < hi]
            if sel:
                print(f"{kind:18s} {f'[{lo:g}, {hi:g})':>12s} {len(sel):4d} {np.median(np.abs(sel)):13.1%} "
                      f"{np.median(sel):+11.1%}")
    worst = sorted(elastic.items(), key=lambda kv: -kv[1]["tpot"])[:10]
    print("\nmost sensitive points (TPOT elasticity, TTFT elasticity):")
    for p, e in worst:
        print(f"  {p[:70]:70s} {e['tpot']:7.1f} {e['ttft']:7.1f}")


if __name__ == "__main__":
    main()
