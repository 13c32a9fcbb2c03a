"""planner.types: the shared records and names, importable without numpy (issue 14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("numpy", "scipy", "rich", "yaml")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    return [m for m in out.stdout.strip().split(",") if m]


def test_importing_planner_types_imports_no_numpy():
    assert _loaded_after("import planner.types") == []


def test_the_check_sees_numpy_when_it_is_imported():
    """The subprocess check can fail: planner.api does load numpy."""
    assert "numpy" in _loaded_after("import planner.api")


def test_the_old_homes_re_export_the_same_objects():
    from planner import api, catalog, types
    from planner.serving import REGISTRY, common

    assert api.Inputs is types.Inputs and api.Plan is types.Plan and api.SLO is types.SLO
    assert api.Pool is common.Pool is types.Pool
    assert api.Deployment is common.Deployment is types.Deployment
    assert common.Metrics is types.Metrics and api.DEFAULTS is types.DEFAULTS
    assert catalog.WEIGHT_DTYPES is types.WEIGHT_DTYPES and catalog.KV_DTYPES is types.KV_DTYPES
    assert types.APPROACHES == tuple(REGISTRY) == common.APPROACHES
    assert common.PERCENTILES is types.PERCENTILES


def test_records_without_numpy():
    """Pool/Deployment arithmetic needs nothing but the records: 2 instances of tp4 x pp2 on
    8-GPU nodes are 16 GPUs on 2 nodes; 3 tp2 instances pack into one node."""
    from planner.types import SLO, Deployment, Pool

    big = Pool("decode", "h100-sxm", 2, 4, pp=2)
    small = Pool("prefill", "h100-sxm", 3, 2)
    assert (big.gpus, big.nodes(8), big.lanes, big.spec()) == (16, 2, 4, "2xtp4pp2@h100-sxm")
    assert (small.gpus, small.nodes(8)) == (6, 1)
    dep = Deployment("disaggregated", (small, big))
    assert dep.total_gpus == 22 and dep.pool("decode") is big
    assert SLO(0.2, 0.05).key == "p90" and SLO(0.2, 0.05, 99).key == "p99"
