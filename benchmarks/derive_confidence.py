"""Derive the confidence table from the validation residuals.

    python benchmarks/derive_confidence.py            # print the coverage it would ship
    python benchmarks/derive_confidence.py --write    # rewrite the two files below

Reruns ``pdplan validate`` on the out-of-sample sets (serving, offline-grid, deepseek), takes
``log(measured / predicted)`` of every TTFT, TPOT and output-throughput row with its GPU and load
regime (:func:`planner.confidence.residual_records`), and writes

* ``tests/data/confidence_residuals.yaml``: the per-row residuals (the tests' cross-validation
  reads them);
* ``tests/data/confidence.yaml``: the cells (:func:`planner.confidence.build_table`) that
  ``pdplan estimate`` and ``recommend`` read at run time.

It prints the share of measured values inside their 80 % range, in sample and cross-validated
(5 folds over operating points, and leave one source out), for docs/validation.md.
Rerun it after any change that moves the validation predictions.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner import confidence as conf  # noqa: E402

DATA = ROOT / "tests" / "data"
HEADER = """\
# {what}
# Written by `python benchmarks/derive_confidence.py --write` from `pdplan validate --set serving`,
# `--set offline-grid` and `--set deepseek` (out of sample); see planner/confidence.py for how it
# is read. Do not edit by hand: rerun the script after a change that moves the predictions.
"""


def _q(s: str) -> str:
    """A YAML scalar for an id (quoted where YAML would read it as something else)."""
    import yaml

    return s if yaml.safe_load(s) == s and ":" not in s and "#" not in s else '"' + s.replace('"', '\\"') + '"'


def write_residuals(records: list, path: Path) -> None:
    lines = [HEADER.format(what="Validation residuals log(measured / predicted), one row per predicted TTFT, TPOT or "
                           "output-throughput value."), f"columns: [{', '.join(conf.RESIDUAL_COLUMNS)}]", "rows:"]
    for r in records:
        vals = [_q(str(r[c])) for c in conf.RESIDUAL_COLUMNS[:-1]] + [f"{r['log_residual']:.6f}"]
        lines.append(f"- [{', '.join(vals)}]")
    path.write_text("\n".join(lines) + "\n")


def write_table(table: dict, path: Path, records: list) -> None:
    lines = [HEADER.format(what="Confidence cells: quantiles of log(measured / predicted) per metric family, GPU and "
                           "load regime."),
             f"# {len(records)} residual rows; cells with at least {conf.MIN_COUNT} rows; q = the quantile at each "
             "of `levels`.",
             f"schema_version: {conf.SCHEMA_VERSION}",
             f"min_count: {conf.MIN_COUNT}",
             f"levels: [{', '.join(f'{lv:.2f}' for lv in conf.LEVELS)}]",
             "cells:"]
    for key, c in table.items():
        lines.append(f"  {key}:")
        lines.append(f"    count: {c['count']}")
        lines.append(f"    q: [{', '.join(f'{x:.5f}' for x in c['q'])}]")
    path.write_text("\n".join(lines) + "\n")


def shares(pairs, key) -> dict:
    by = defaultdict(list)
    for r, ok in pairs:
        by[key(r)].append(ok)
    return {k: (sum(v) / len(v), len(v)) for k, v in sorted(by.items())}


def report(records: list, table: dict, c: float = conf.DEFAULT_CONFIDENCE) -> str:
    ins = [(r, conf.inside(r, table, c)) for r in records]
    cv = conf.cross_validated(records, confidence=c)
    loso = conf.cross_validated(records, confidence=c, group="source")
    out = [f"share of measured values inside the {c:.0%} range", "| rows | count | in sample | 5-fold | leave one source out |",
           "|---|---:|---:|---:|---:|"]
    views = [("all", lambda r: "all"), ("set", lambda r: r["set"]), ("family", lambda r: r["family"]),
             ("serving family", lambda r: f"serving {r['family']}" if r["set"] == "serving" else "-"),
             ("serving stat", lambda r: f"serving {r['family']} {r['stat']}" if r["set"] == "serving" else "-")]
    for _, key in views:
        a, b, d = shares(ins, key), shares(cv, key), shares(loso, key)
        for k in a:
            if k == "-":
                continue
            out.append(f"| {k} | {a[k][1]} | {a[k][0]:.1%} | {b[k][0]:.1%} | {d[k][0]:.1%} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite tests/data/confidence*.yaml")
    args = ap.parse_args()
    records = conf.residual_records()
    table = conf.build_table(records)
    print(report(records, table))
    print(f"{len(records)} residual rows, {len(table)} cells")
    if args.write:
        write_residuals(records, DATA / conf.RESIDUALS_FILE)
        write_table(table, DATA / conf.TABLE_FILE, records)
        print(f"wrote {DATA / conf.RESIDUALS_FILE} and {DATA / conf.TABLE_FILE}")


if __name__ == "__main__":
    main()
