"""Reading user files with one clear error for every way they can be wrong."""

from __future__ import annotations

from pathlib import Path


def read_text(path, label: str, expected: str, error=None) -> str:
    """The UTF-8 text of ``path``, or ``error`` (an exception class; InvalidRequestError by
    default) with a message that starts with ``label`` and says what was wrong: missing, a
    directory, unreadable, binary or not UTF-8. ``expected`` names the kind of file wanted."""
    if error is None:
        from planner.errors import InvalidRequestError as error
    p = Path(path).expanduser()
    if not p.exists():
        raise error(f"{label} does not exist")
    if p.is_dir():
        raise error(f"{label} is a directory, expected {expected}")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    if b"\x00" in raw:
        raise error(f"{label} is a binary file, expected {expected}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{label} is not UTF-8 text") from None


def read_yaml(path, label: str, expected: str, error=None):
    """The parsed YAML of ``path`` (``None`` for an empty document), with :func:`read_text`'s
    checks; malformed YAML is ``error`` naming ``label`` and the line."""
    import yaml

    if error is None:
        from planner.errors import InvalidRequestError as error
    text = read_text(path, label, expected, error)
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{label}: malformed YAML{where}") from None
