"""Calibration profiles: the fitted constants of ``pdplan calibrate`` with the provenance of the
data they came from, as a YAML file that ``--profile`` applies and plans embed.

A profile names the model, GPU, engine and TP it was fitted on; applying it to another model or
GPU is an error unless asked (``--force``). Its leave-one-out residuals per metric family give
the likely ranges of predictions made with it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from dataclasses import dataclass, field

from planner.errors import InvalidRequestError

KIND = "calibration_profile"
SCHEMA = 1


@dataclass(frozen=True)
class Profile:
    model: str
    gpu: str
    engine: str
    tp: int
    values: dict  # constant -> value (overhead_ms, request_ms in ms; scales as factors)
    fitted: tuple = ()
    refused: tuple = ()  # ({"name", "why", "hint"}, ...)
    sd: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # {"uncalibrated"|"in_sample"|"leave_one_out": {stat: {...}}}
    residuals: dict = field(default_factory=dict)  # family -> [log(measured / predicted)], leave-one-out
    data: tuple = ()  # ({"file", "sha256", "format", "runs", "date", "engine_version"}, ...)
    engine_version: str | None = None
    created: str = ""
    pdplan_version: str = ""
    path: str | None = None
    sha256: str | None = None

    @property
    def calibration(self):
        from planner.calibrate.fit import calibration_of

        return calibration_of({k: v for k, v in self.values.items() if k in self.fitted})

    def document(self) -> dict:
        return {
            "kind": KIND, "schema_version": SCHEMA, "pdplan_version": self.pdplan_version,
            "created": self.created, "model": self.model, "gpu": self.gpu, "engine": self.engine,
            "engine_version": self.engine_version, "tp": self.tp,
            "constants": {k: {"value": _r(v), "fitted": k in self.fitted,
                              **({"sd": _r(self.sd[k])} if self.sd.get(k) is not None else {})}
                          for k, v in self.values.items()},
            "refused": [dict(r) for r in self.refused],
            "errors": self.errors,
            "residuals": {k: [_r(x) for x in v] for k, v in self.residuals.items()},
            "data": [dict(d) for d in self.data],
        }

    def summary(self) -> dict:
        """What a plan embeds: where the profile is and what it sets."""
        return {"path": self.path, "sha256": self.sha256, "model": self.model, "gpu": self.gpu,
                "engine": self.engine, "tp": self.tp,
                "constants": {k: _r(v) for k, v in self.values.items() if k in self.fitted}}


def _r(v):
    return None if v is None else float(f"{float(v):.6g}")


def from_fit(report, results, setup, engine_id: str) -> Profile:
    """The profile of a :class:`planner.calibrate.fit.FitReport`."""
    from planner import __version__

    data = []
    by_file: dict = {}
    for r in results:
        by_file.setdefault(r.path, []).append(r)
    for path, rs in by_file.items():
        r0 = rs[0]
        data.append({"file": path, "sha256": r0.sha256, "format": r0.format, "runs": len(rs),
                     "date": r0.date, "engine_version": r0.engine_version})
    versions = sorted({r.engine_version for r in results if r.engine_version})
    return Profile(
        model=setup.model.id, gpu=setup.gpu, engine=engine_id, tp=setup.tp,
        values={k: float(v) for k, v in report.values.items()}, fitted=tuple(report.fitted),
        refused=tuple(report.refused), sd={k: v for k, v in report.sd.items() if v is not None},
        errors={"uncalibrated": report.uncalibrated, "in_sample": report.in_sample,
                "leave_one_out": report.loo},
        residuals={k: list(v) for k, v in report.loo_residuals.items()}, data=tuple(data),
        engine_version=", ".join(versions) or None,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        pdplan_version=__version__)


def _need(path, d, key, kind, ctx=""):
    v = d.get(key)
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise InvalidRequestError(f"{path}: {ctx}{key}: missing or not a {kind.__name__}")
    return v


def load_profile(path: str) -> Profile:
    """A profile file, checked: its kind, the constants within their bounds, the residuals finite."""
    from planner.calibrate.fit import CONSTANTS
    from planner.files import decode_text, parse_yaml, read_bytes

    raw = read_bytes(path, f"--profile: {path}", "a calibration profile (YAML)", InvalidRequestError)
    doc = parse_yaml(decode_text(raw, f"--profile: {path}", "a calibration profile (YAML)", InvalidRequestError),
                     f"--profile: {path}", InvalidRequestError)
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise InvalidRequestError(f"--profile: {path}: not a calibration profile (kind: {KIND}); "
                                  "write one with pdplan calibrate -o")
    if doc.get("schema_version") != SCHEMA:
        raise InvalidRequestError(f"--profile: {path}: schema_version {doc.get('schema_version')!r}; "
                                  f"this pdplan reads {SCHEMA}")
    where = f"--profile: {path}"
    model, gpu, engine = (_need(where, doc, k, str) for k in ("model", "gpu", "engine"))
    tp = _need(where, doc, "tp", int)
    consts = _need(where, doc, "constants", dict)
    bounds = {c[0]: (c[1], c[2]) for c in CONSTANTS}
    values, fitted, sd = {}, [], {}
    for k, e in consts.items():
        if k not in bounds:
            raise InvalidRequestError(f"{where}: constants.{k}: unknown; valid: {', '.join(bounds)}")
        if not isinstance(e, dict):
            raise InvalidRequestError(f"{where}: constants.{k}: must be a mapping with value")
        v = e.get("value")
        lo, hi = bounds[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise InvalidRequestError(f"{where}: constants.{k}.value: must be a number within [{lo:g}, {hi:g}], "
                                      f"got {v!r}")
        values[k] = float(v)
        if e.get("fitted"):
            fitted.append(k)
        if isinstance(e.get("sd"), (int, float)) and not isinstance(e.get("sd"), bool):
            sd[k] = float(e["sd"])
    residuals = {}
    for fam, xs in (doc.get("residuals") or {}).items():
        if not isinstance(xs, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                and math.isfinite(x) for x in xs):
            raise InvalidRequestError(f"{where}: residuals.{fam}: must be a list of finite numbers")
        residuals[str(fam)] = [float(x) for x in xs]
    return Profile(model=model, gpu=gpu, engine=engine, tp=tp, values=values, fitted=tuple(fitted),
                   refused=tuple(doc.get("refused") or ()), sd=sd, errors=dict(doc.get("errors") or {}),
                   residuals=residuals, data=tuple(doc.get("data") or ()),
                   engine_version=doc.get("engine_version"), created=str(doc.get("created") or ""),
                   pdplan_version=str(doc.get("pdplan_version") or ""), path=str(path),
                   sha256=hashlib.sha256(raw).hexdigest())


def check_applies(profile: Profile, model_id: str, gpu_ids, force: bool) -> tuple | None:
    """The GPUs the profile's calibration applies to (None = all of them, with ``force``);
    an error when it was fitted on another model or GPU and ``force`` is not given."""
    gpus = list(gpu_ids)
    if force:
        return None
    if profile.model != model_id:
        raise InvalidRequestError(f"--profile: {profile.path}: fitted on model {profile.model}, not {model_id}; "
                                  "pass --force to apply it anyway")
    if profile.gpu not in gpus:
        raise InvalidRequestError(f"--profile: {profile.path}: fitted on GPU {profile.gpu}, not "
                                  f"{', '.join(gpus)}; pass --force to apply it anyway")
    return (profile.gpu,)
