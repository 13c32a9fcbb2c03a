"""Calibration to a user's own benchmark results (``pdplan calibrate``)."""

from planner.calibrate.readers import FORMATS, BenchResult, read_results

__all__ = ["FORMATS", "BenchResult", "read_results"]
