"""Print the summary tables of docs/validation.md from `pdplan validate` (the page is built from
these, so the numbers there and the command's output agree):

    python benchmarks/validation_tables.py [kernels|measurements|offline-grid|pass-grid|serving|deepseek ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from planner.validate import run  # noqa: E402


def table(summary: dict) -> str:
    lines = ["| group | rows | median abs | p90 abs | median signed |", "|---|---:|---:|---:|---:|"]

    def row(name, s):
        lines.append(f"| {name} | {s['count']} | {s['median_abs_error']:.1%} | {s['p90_abs_error']:.1%} "
                     f"| {s['median_signed_error']:+.1%} |")

    row("all", summary)
    for key in ("by_kind", "by_gpu", "by_kind_gpu", "by_source_kind"):
        for name, s in summary.get(key, {}).items():
            row(("source " if key == "by_source_kind" else "") + name.replace("/", " "), s)
    return "\n".join(lines)


def main(argv=None):
    for ds in (argv or sys.argv[1:]) or ("kernels", "measurements", "offline-grid", "pass-grid", "serving", "deepseek"):
        print(f"## {ds}\n\n{table(run(dataset=ds).summary)}\n")


if __name__ == "__main__":
    main()
