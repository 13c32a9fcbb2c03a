"""The ``pdplan`` command line: parse options, call the library, render the result.

A package of thin click commands, one module per command family; each parses its options (into
library objects through :mod:`planner.inputs`), makes one :mod:`planner.api` call and hands the
result to :mod:`planner.render`. No maths, no file formats, no catalog or serving logic here:

- :mod:`planner.cli.app`: the group, :func:`main` (``pdplan = planner.cli:main``, and
  ``python -m planner``), errors as one ``Error:`` line with the contract's exit code;
- :mod:`planner.cli.options`: parameter types, option groups (decorators), ``--json``/``--format``;
- :mod:`planner.cli.planning` (estimate, recommend, evaluate), :mod:`planner.cli.sweep`
  (whatif), :mod:`planner.cli.simulation` (simulate, timeline), :mod:`planner.cli.catalogs`,
  :mod:`planner.cli.validation`, :mod:`planner.cli.calibration`, :mod:`planner.cli.exporting`,
  :mod:`planner.cli.reports` (kv, step).

Only click and the standard library are imported at module level so that ``pdplan --help``
starts fast (no numpy, scipy or rich); every command imports what it needs when it runs.
"""

from __future__ import annotations

from planner.cli.app import _ascii_fallback, cli, main
from planner.cli.calibration import calibrate
from planner.cli.catalogs import CATALOG_TABLES, catalog
from planner.cli.exporting import EXPORT_TARGETS, export
from planner.cli.options import (
    APPROACHES,
    KV_DTYPES,
    KV_TRANSFER_DTYPES,
    PERCENTILES,
    WEIGHT_DTYPES,
)
from planner.cli.planning import estimate, evaluate, recommend
from planner.cli.reports import kv, step
from planner.cli.simulation import simulate, timeline
from planner.cli.sweep import whatif
from planner.cli.validation import validate
from planner.inputs import DEFAULT_CHUNK

for _command in (calibrate, catalog, estimate, evaluate, export, kv, recommend, simulate, step,
                 timeline, validate, whatif):
    cli.add_command(_command)

__all__ = ["APPROACHES", "CATALOG_TABLES", "DEFAULT_CHUNK", "EXPORT_TARGETS", "KV_DTYPES",
           "KV_TRANSFER_DTYPES", "PERCENTILES", "WEIGHT_DTYPES", "_ascii_fallback", "cli",
           "main"]
