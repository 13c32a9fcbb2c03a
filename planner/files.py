"""Reading and writing user files, with one clear error for every way they can be wrong.

Reading: every file the user names (plans, traces, catalog entries, Hugging Face config.json,
validation sets) goes through :func:`read_bytes`, which refuses anything that is not a regular
file (a FIFO, a device such as ``/dev/zero``, a directory, a socket) before reading it, opens
without blocking (a FIFO swapped in cannot hang the run), and reads at most its size cap plus one
byte. On top of it :func:`read_yaml` refuses YAML whose aliases would expand a "billion laughs"
or that nests too deeply, and :func:`parse_json` bounds nesting and integer length.

Writing: :class:`Output` is one output file, checked before any work is done and written
through a temporary file in the target's directory that is moved into place at the end. A new
file gets the mode the user's umask gives a new file; ``--force`` keeps the replaced file's
mode. Without ``--force`` the file is created exclusively (a hard link of the finished temporary
file), so of two concurrent writers exactly one wins. :class:`Outputs` groups the files of one
run: all of them are written, or (on an error or an interrupt) none, and no temporary file is
left behind.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import NoReturn

MB = 1024 * 1024
TRACE_MAX_BYTES = 64 * MB  # a trace of a few million requests
CONFIG_MAX_BYTES = 1 * MB  # catalog entries, Hugging Face config.json
PLAN_MAX_BYTES = 16 * MB  # plans embed their catalog entries and the lengths of their trace
DATA_MAX_BYTES = 16 * MB  # validation sets
YAML_MAX_DEPTH = 64  # nested mappings and sequences
YAML_MAX_ALIASES = 100
YAML_MAX_NODES = 1_000_000  # nodes the document would have with every alias expanded
JSON_MAX_DEPTH = 64
MAX_INT_DIGITS = 100  # digits of an integer literal in JSON or YAML


def _error_class(error):
    if error is None:
        from planner.errors import InvalidRequestError

        return InvalidRequestError
    return error


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} kB" if n >= 1024 else f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path, label: str, expected: str, error=None, max_bytes: int = CONFIG_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes`` of them), or ``error`` (an
    exception class; InvalidRequestError by default) with a message that starts with ``label``:
    missing, a directory, a FIFO, a device, unreadable or too large. ``expected`` names the kind
    of file wanted."""
    error = _error_class(error)
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{label} does not exist") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{label} is a directory, expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{label} is {_kind(st.st_mode)}, not a regular file; expected {expected}")
    if st.st_size > max_bytes:
        raise error(f"{label} is {_size(st.st_size)}; the limit is {_size(max_bytes)} for {expected}")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)  # what was opened, in case the name was swapped since the stat
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{label} is {_kind(st.st_mode)}, not a regular file; expected {expected}")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, MB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > max_bytes:
        raise error(f"{label} is larger than {_size(max_bytes)}, the limit for {expected}")
    return raw


def decode_text(raw: bytes, label: str, expected: str, error=None) -> str:
    """``raw`` as UTF-8 text (a byte-order mark dropped), refusing binary data."""
    error = _error_class(error)
    if b"\x00" in raw:
        raise error(f"{label} is a binary file, expected {expected}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{label} is not UTF-8 text") from None


def read_text(path, label: str, expected: str, error=None, max_bytes: int = CONFIG_MAX_BYTES) -> str:
    """The UTF-8 text of ``path`` with :func:`read_bytes`' checks; binary data or text that is
    not UTF-8 is ``error`` naming ``label``."""
    return decode_text(read_bytes(path, label, expected, error, max_bytes), label, expected, error)


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


def _loader():
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_yaml_events(text: str, label: str, error) -> None:
    """Refuse YAML that nests deeper than ``YAML_MAX_DEPTH``, has more than
    ``YAML_MAX_ALIASES`` aliases, an alias of an unfinished anchor, would have more than
    ``YAML_MAX_NODES`` nodes with its aliases expanded, or an integer of more than
    ``MAX_INT_DIGITS`` digits, from the parser's events alone (nothing is built)."""
    import re

    import yaml

    long_int = re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$")  # YAML ints
    stack: list[list] = []  # open collections: [expanded node count, anchor or None]
    anchors: dict = {}
    aliases = total = 0

    def add(n: int) -> None:
        nonlocal total
        if stack:
            stack[-1][0] += n
        else:
            total += n
        if total + sum(s[0] for s in stack) > YAML_MAX_NODES:
            raise error(f"{label}: YAML aliases expand to more than {YAML_MAX_NODES:,} nodes "
                        "(a \"billion laughs\"?)")

    for ev in yaml.parse(text, Loader=_loader()):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= YAML_MAX_DEPTH:
                raise error(f"{label}: YAML nested deeper than {YAML_MAX_DEPTH} levels")
            stack.append([1, ev.anchor])
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            n, anchor = stack.pop()
            if anchor is not None:
                anchors[anchor] = n
            add(n)
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.implicit[0] and len(ev.value) > MAX_INT_DIGITS and long_int.match(ev.value):
                raise error(f"{label}: an integer with more than {MAX_INT_DIGITS} digits")
            if ev.anchor is not None:
                anchors[ev.anchor] = 1
            add(1)
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > YAML_MAX_ALIASES:
                raise error(f"{label}: more than {YAML_MAX_ALIASES} YAML aliases")
            if ev.anchor not in anchors:
                raise error(f"{label}: YAML alias *{ev.anchor} refers to an unfinished or unknown anchor")
            add(anchors[ev.anchor])


def parse_yaml(text: str, label: str, error=None):
    """The parsed YAML ``text`` (``None`` for an empty document) with the limits of
    :func:`check_yaml_events`; malformed YAML is ``error`` naming ``label`` and the line."""
    import yaml

    error = _error_class(error)
    try:
        check_yaml_events(text, label, error)
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise error(f"{label}: malformed YAML{where}") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date that is not one
        raise error(f"{label}: malformed YAML ({' '.join(str(exc).split())[:120]})") from None
    except RecursionError:
        raise error(f"{label}: YAML nested too deeply") from None


def read_yaml(path, label: str, expected: str, error=None, max_bytes: int = CONFIG_MAX_BYTES):
    """The parsed YAML of ``path`` (``None`` for an empty document), with :func:`read_text`'s
    checks and :func:`parse_yaml`'s limits."""
    return parse_yaml(read_text(path, label, expected, error, max_bytes), label, error)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


class _LongInteger(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongInteger
    return int(text)


class _NonFinite(Exception):
    pass


def _finite_float(text: str) -> float:
    import math

    v = float(text)
    if not math.isfinite(v):  # 1e400 reads as infinity
        raise _NonFinite(text)
    return v


def _no_constant(name: str):
    raise _NonFinite(name)


def _depth(obj) -> int:
    """Nesting depth of lists and dicts, without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        o, d = todo.pop()
        if isinstance(o, dict):
            o = list(o.values())
        elif not isinstance(o, list):
            continue
        deepest = max(deepest, d)
        if d > JSON_MAX_DEPTH:
            break
        todo.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return deepest


def parse_json(text: str, label: str, error=None):
    """``json.loads(text)``, with nesting at most ``JSON_MAX_DEPTH``, integers of at most
    ``MAX_INT_DIGITS`` digits and finite numbers only (no NaN, Infinity or 1e400); anything else is ``error`` naming ``label`` (and the line)."""
    import json

    error = _error_class(error)
    try:
        obj = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{label}: not valid JSON (line {exc.lineno})") from None
    except _LongInteger:
        raise error(f"{label}: an integer with more than {MAX_INT_DIGITS} digits") from None
    except _NonFinite as exc:
        raise error(f"{label}: {str(exc)[:40]} is not a finite number (JSON has no NaN or Infinity)") from None
    except RecursionError:
        raise error(f"{label}: JSON nested deeper than {JSON_MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:
        raise error(f"{label}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None
    if _depth(obj) > JSON_MAX_DEPTH:
        raise error(f"{label}: JSON nested deeper than {JSON_MAX_DEPTH} levels")
    return obj


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_umask_lock = threading.Lock()


def new_file_mode() -> int:
    """The permission bits a new file gets under the process umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # reading the umask means setting it; keep other threads out meanwhile
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == getattr(errno, "EDQUOT", None):
        return "disk quota exceeded"
    return (exc.strerror or str(exc)).lower()


class Output:
    """One file a run writes (``-o``, ``--plot-file``), checked when created, before any work:
    it must not exist unless ``force`` (a dangling symlink exists), must not be a directory, a
    device, a FIFO or a socket, and its directory must exist and be writable. A symlink is
    written through (its target is replaced, the link kept). ``hint`` ends the "exists" error."""

    def __init__(self, path, flag: str, force: bool = False, hint: str = "pass --force to overwrite it"):
        from planner.errors import InvalidRequestError

        self.path, self.flag, self.force, self.hint = str(path), flag, bool(force), hint
        self._error = InvalidRequestError
        self.tmp: str | None = None
        self.committed = False
        p = Path(self.path).expanduser()
        if not self.path or self.path.endswith(os.sep) or p.name in ("", ".", ".."):
            self._fail("is a directory")
        try:
            lst = os.lstat(p)
        except FileNotFoundError:
            lst = None
        except OSError as exc:
            self._fail(f"cannot write it: {_why(exc)}")
        target, st = p, lst
        if lst is not None and stat.S_ISLNK(lst.st_mode):
            target = Path(os.path.realpath(p))
            try:
                st = os.stat(target)
            except FileNotFoundError:
                st = None
                if not self.force:
                    self._fail(f"exists (a symlink to {target}, which does not exist); {hint}")
            except OSError as exc:
                self._fail(f"cannot write it: {_why(exc)}")
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                self._fail("is a directory")
            if not stat.S_ISREG(st.st_mode):
                self._fail(f"is {_kind(st.st_mode)}, not a regular file; refusing to replace it")
            if not self.force:
                self._fail(f"exists; {hint}")
        self.target = target
        self.existing_mode = stat.S_IMODE(st.st_mode) if st is not None else None
        parent = target.parent
        if not parent.is_dir():
            raise self._error(f"{flag}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            why = "permission denied"
            try:
                if os.statvfs(parent).f_flag & getattr(os, "ST_RDONLY", 1):
                    why = "read-only file system"
            except OSError:
                pass
            raise self._error(f"{flag}: cannot write {self.path}: {why} (directory {parent})")

    def _fail(self, what: str) -> NoReturn:
        raise self._error(f"{self.flag}: {self.path} {what}")

    def key(self) -> str:
        """The file this output ends up in, to tell two outputs naming one file."""
        return os.path.normcase(os.path.abspath(self.target))

    def stage(self, data) -> None:
        """Write ``data`` (str, bytes, or a function given a binary file object) to a temporary
        file next to the target, with the final mode."""
        self.discard()
        parent = self.target.parent
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.target.name[:80]}.", suffix=".tmp", dir=parent)
            with os.fdopen(fd, "wb") as fh:
                if callable(data):
                    data(fh)
                else:
                    fh.write(data.encode("utf-8") if isinstance(data, str) else data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(self.tmp, self.existing_mode if self.existing_mode is not None else new_file_mode())
        except OSError as exc:
            self.discard()
            raise self._error(f"{self.flag}: cannot write {self.path}: {_why(exc)}") from None
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        """Move the staged file into place: replace the target under ``force``, else create it
        exclusively (failing, with nothing changed, if it appeared meanwhile)."""
        if self.tmp is None:
            raise RuntimeError("Output.commit before stage")
        try:
            if self.force:
                os.replace(self.tmp, self.target)
                self.tmp = None
            else:
                self._create_exclusively()
            self.committed = True
        except FileExistsError:
            self._fail(f"exists; {self.hint}")
        except IsADirectoryError:
            self._fail("is a directory")
        except OSError as exc:
            raise self._error(f"{self.flag}: cannot write {self.path}: {_why(exc)}") from None
        finally:
            self.discard()

    def _create_exclusively(self) -> None:
        assert self.tmp is not None  # commit() checked it
        try:
            os.link(self.tmp, self.target)
            return
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
        # a file system without hard links: an exclusive create, then the bytes
        fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(self.tmp, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(MB):
                    dst.write(chunk)
                os.fchmod(dst.fileno(), os.stat(self.tmp).st_mode & 0o777)
        except BaseException:
            try:
                os.unlink(self.target)
            except OSError:
                pass
            raise

    def discard(self) -> None:
        """Remove the temporary file, if any."""
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None

    def undo(self) -> None:
        """Remove a file this output created (not one it replaced under ``--force``)."""
        if self.committed and self.existing_mode is None and not self.force:
            try:
                os.unlink(self.target)
            except OSError:
                pass
            self.committed = False


class Outputs:
    """The output files of one run: ``with Outputs() as out: o = out.add(...); ...; o.stage(...)``;
    :meth:`commit` moves every staged file into place. Leaving the block by an exception (an
    error, Ctrl-C) removes every temporary file, and files created by a failed commit."""

    def __init__(self):
        self.items: list[Output] = []

    def add(self, path, flag: str, force: bool = False, hint: str = "pass --force to overwrite it") -> Output:
        from planner.errors import InvalidRequestError

        out = Output(path, flag, force, hint)
        for other in self.items:
            if other.key() == out.key():
                raise InvalidRequestError(f"{other.flag} and {flag}: both name {out.path}; give "
                                          "two different files")
        self.items.append(out)
        return out

    def commit(self) -> None:
        try:
            for out in self.items:
                if out.tmp is not None:
                    out.commit()
        except BaseException:
            for out in self.items:
                out.undo()
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        for out in self.items:
            out.discard()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def write_file(path, data, flag: str = "-o", force: bool = False,
               hint: str = "pass --force to overwrite it") -> None:
    """Check, stage and commit one output file (see :class:`Output`)."""
    out = Output(path, flag, force, hint)
    try:
        out.stage(data)
        out.commit()
    finally:
        out.discard()
