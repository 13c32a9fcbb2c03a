"""Issue 11 (hardened), files, encodings and interrupts: every user file is read through one
reader that refuses FIFOs, devices and directories and caps sizes, YAML and JSON are bounded,
output files get sane modes, are written through symlinks, never replace devices or
directories, are created exclusively and never left behind half-made; output survives an
ASCII locale and a closed pipe; Ctrl-C is exit 130; a plan carries its trace by content."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from jsondoc import result_of

from planner import files
from planner.cli import cli
from planner.errors import InvalidRequestError

REPO = Path(__file__).resolve().parent.parent
REC = ["recommend", "--qps", "2", "--max-gpus", "16"]
TRACE = "input_tokens,output_tokens\n1000,100\n3000,300\n1000,50\n2000,200\n"


def run(args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def one_error(res, *needles):
    """Exit 2 and exactly one ``Error:`` line holding every needle, no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def deadline():
    """Fail (instead of hanging the suite) if the test runs past ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError("the test ran past its deadline (a hang?)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------------------------
# Reading: only regular files, bounded
# --------------------------------------------------------------------------------------------


def _model_dir(tmp_path: Path, name: str = "m.yaml") -> Path:
    d = tmp_path / "cat"
    (d / "models").mkdir(parents=True)
    return d / "models" / name


@pytest.mark.parametrize("kind", ["plan", "trace", "model", "catalog"])
def test_a_fifo_is_refused_without_blocking(tmp_path, deadline, kind):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    if kind == "catalog":
        fifo = _model_dir(tmp_path)
        args = ["--catalog", tmp_path / "cat", "catalog", "models"]
    else:
        fifo = tmp_path / {"plan": "p.yaml", "trace": "t.csv", "model": "config.json"}[kind]
        args = {"plan": ["evaluate", fifo],
                "trace": ["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", fifo],
                "model": ["kv", "--seq-len", "2k", "--model", fifo]}[kind]
    os.mkfifo(fifo)
    t0 = time.monotonic()
    one_error(run(args), "FIFO", str(fifo.name))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("args", [
    ["evaluate", "/dev/zero"],
    ["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", "/dev/zero"],
    ["kv", "--seq-len", "2k", "--model", "/dev/zero"],
    ["simulate", "/dev/zero"],
])
def test_a_device_is_refused_before_reading(args, deadline):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    one_error(run(args), "/dev/zero", "device")


def test_a_directory_is_refused(tmp_path):
    one_error(run(["evaluate", tmp_path]), "is a directory")
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", tmp_path]), "--trace",
              "is a directory")
    (tmp_path / "config.json").mkdir()
    one_error(run(["kv", "--seq-len", "2k", "--model", tmp_path / "config.json"]), "--model",
              "is a directory")


def test_sizes_are_capped_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "config.json"
    with open(big, "wb") as fh:  # sparse: the size alone refuses it
        fh.truncate(files.CONFIG_MAX_BYTES + 1)
    one_error(run(["kv", "--seq-len", "2k", "--model", big]), "--model", "limit is 1 MB")
    plan = tmp_path / "plan.yaml"
    with open(plan, "wb") as fh:
        fh.truncate(files.PLAN_MAX_BYTES + 1)
    one_error(run(["evaluate", plan]), "plan.yaml", "limit is 16 MB")
    trace = tmp_path / "t.csv"
    trace.write_text(TRACE)
    monkeypatch.setattr(files, "TRACE_MAX_BYTES", 10)
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "--trace",
              "limit is 10 bytes")


def test_read_bytes_reads_at_most_the_cap(tmp_path, monkeypatch):
    """A file that grows (or lies about its size) is cut at cap + 1 bytes and refused."""
    p = tmp_path / "x"
    p.write_bytes(b"a" * 100)
    real_stat = os.stat

    def small(path, *a, **k):
        s = real_stat(path, *a, **k)
        if str(path) == str(p):
            return os.stat_result((s.st_mode, s.st_ino, s.st_dev, s.st_nlink, s.st_uid, s.st_gid, 1,
                                   s.st_atime, s.st_mtime, s.st_ctime))
        return s

    monkeypatch.setattr(os, "stat", small)
    with pytest.raises(InvalidRequestError, match="larger than 10 bytes"):
        files.read_bytes(p, "x", "a file", max_bytes=10)
    assert files.read_bytes(p, "x", "a file", max_bytes=100) == b"a" * 100


def _laughs(levels: int = 9) -> str:
    lines = ["lol: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_fast(tmp_path, deadline):
    plan = tmp_path / "laughs.yaml"
    plan.write_text("schema_version: 1\n" + _laughs())
    t0 = time.monotonic()
    one_error(run(["evaluate", plan]), "laughs.yaml", "billion laughs")
    entry = _model_dir(tmp_path)
    entry.write_text(_laughs() + "id: m\nnotes: *a8\n")
    one_error(run(["--catalog", tmp_path / "cat", "catalog", "models"]), "m.yaml", "billion laughs")
    assert time.monotonic() - t0 < 5


def test_yaml_aliases_depth_and_long_integers_are_bounded(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n")
    one_error(run(["evaluate", p]), "more than 100 YAML aliases")
    p.write_text("a: " + "[" * 200 + "]" * 200 + "\n")
    one_error(run(["evaluate", p]), "nested deeper than 64")
    p.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_error(run(["evaluate", p]), "p.yaml")
    p.write_text("schema_version: " + "9" * 5000 + "\n")
    one_error(run(["evaluate", p]), "more than 100 digits")
    p.write_text("a: &x [*x]\n")
    one_error(run(["evaluate", p]), "p.yaml")
    # a few aliases and moderate nesting are fine
    assert files.parse_yaml("a: &x [1, 2]\nb: *x\nc: *x\n", "t") == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}
    nested = "a: " + "[" * 60 + "]" * 60
    assert files.parse_yaml(nested, "t") is not None


def test_json_depth_and_integer_length_are_bounded(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text("[" * 100_000 + "]" * 100_000)
    one_error(run(["kv", "--seq-len", "2k", "--model", cfg]), "--model", "nested deeper")
    cfg.write_text('{"a": ' + "[" * 65 + "]" * 65 + "}")
    one_error(run(["kv", "--seq-len", "2k", "--model", cfg]), "--model", "nested deeper than 64")
    cfg.write_text('{"hidden_size": ' + "9" * 5000 + "}")
    one_error(run(["kv", "--seq-len", "2k", "--model", cfg]), "--model", "more than 100 digits")
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"isl": 10, "osl": 5}\n{"isl": ' + "1" * 5000 + ', "osl": 5}\n')
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "line 2", "digits")
    trace.write_text('{"isl": 10, "osl": 5}\n' + "[" * 50_000 + "]" * 50_000 + "\n")
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "line 2", "nested")
    assert files.parse_json('{"a": ' + "[" * 63 + "]" * 63 + "}", "t")


def test_a_huge_csv_field_is_a_clean_error(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("input_tokens,output_tokens\n" + "1" * 200_000 + ",5\n")
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "--trace",
              "line 2", "field larger than field limit")
    trace.write_text('input_tokens,output_tokens\n"' + "x" * 200_000 + '",5\n')
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "field limit")


@pytest.mark.parametrize("text,needle", [
    ("input_tokens,output_tokens\n100,20\n200,0\n", "row 3"),
    ("input_tokens,output_tokens\n100,20\n1.5,2\n", "row 3"),
    ("input_tokens,output_tokens\n100,20\nabc,2\n", "not a number"),
    ('input_tokens,output_tokens\n100,20\n"1e400",2\n', "row 3"),
    ("input_tokens,output_tokens\n100,20\n100\n", "row 3"),
    ('{"isl": 1, "osl": true}\n', "row 1"),
    ('{"isl": 1.5, "osl": 2}\n', "row 1"),
])
def test_bad_trace_rows_name_the_row(tmp_path, text, needle):
    trace = tmp_path / "t.csv"
    trace.write_text(text)
    one_error(run(["estimate", "--replicas", "1xtp8", "--qps", "1", "--trace", trace]), "--trace", needle)


def test_the_fast_and_the_row_by_row_csv_readers_agree(tmp_path):
    from planner.workload import load_trace

    rng = np.random.default_rng(3)
    isl, osl = rng.integers(1, 9000, 500), rng.integers(1, 900, 500)
    plain = tmp_path / "plain.csv"
    plain.write_text("id,isl,osl\n" + "".join(f"r{i},{a},{b}\n" for i, (a, b) in enumerate(zip(isl, osl))))
    quoted = tmp_path / "quoted.csv"  # a quote: the row-by-row reader
    quoted.write_text("id,isl,osl\n" + "".join(f'"r{i}",{a},{b}.0\n' for i, (a, b) in enumerate(zip(isl, osl))))
    a, b = load_trace(str(plain)), load_trace(str(quoted))
    assert np.array_equal(a.isl, b.isl) and np.array_equal(a.osl, b.osl)
    order = np.lexsort((osl, isl))
    assert np.array_equal(a.isl, isl[order]) and np.array_equal(a.osl, osl[order])
    assert a.sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Writing: modes, symlinks, devices, exclusive create, nothing left behind
# --------------------------------------------------------------------------------------------


@pytest.fixture
def umask():
    old = os.umask(0o022)

    def set_mask(m):
        os.umask(m)

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    out = tmp_path / "plan.yaml"
    assert run(REC + ["-o", out]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert files.new_file_mode() == mode
    files.write_file(tmp_path / "w.txt", "x")
    assert stat.S_IMODE((tmp_path / "w.txt").stat().st_mode) == mode


def test_force_keeps_the_mode_of_the_replaced_file(tmp_path, umask):
    umask(0o077)
    out = tmp_path / "plan.yaml"
    out.write_text("old")
    out.chmod(0o640)
    assert run(REC + ["-o", out, "--force"]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and "schema_version" in out.read_text()


def test_output_through_a_symlink_replaces_the_target(tmp_path):
    real, link = tmp_path / "real.yaml", tmp_path / "link.yaml"
    real.write_text("old")
    link.symlink_to(real.name)
    one_error(run(REC + ["-o", link]), "-o", "exists", "--force")
    assert real.read_text() == "old"
    assert run(REC + ["-o", link, "--force"]).exit_code == 0
    assert link.is_symlink() and os.readlink(link) == real.name
    assert "schema_version" in real.read_text()
    assert listing(tmp_path) == ["link.yaml", "real.yaml"]


def test_a_dangling_symlink_counts_as_existing(tmp_path):
    link = tmp_path / "plan.yaml"
    link.symlink_to(tmp_path / "missing.yaml")
    one_error(run(REC + ["-o", link]), "-o", "exists", "does not exist", "--force")
    assert listing(tmp_path) == ["plan.yaml"] and link.is_symlink()
    assert run(REC + ["-o", link, "--force"]).exit_code == 0
    assert link.is_symlink() and "schema_version" in (tmp_path / "missing.yaml").read_text()


def test_never_onto_a_device_or_a_directory(tmp_path):
    if os.path.exists("/dev/null"):
        before = os.stat("/dev/null")
        one_error(run(REC + ["-o", "/dev/null", "--force"]), "-o", "/dev/null", "device")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == before.st_ino
    one_error(run(REC + ["-o", tmp_path, "--force"]), "-o", "is a directory")
    one_error(run(REC + ["-o", str(tmp_path) + "/", "--force"]), "-o", "is a directory")
    one_error(run(REC + ["-o", tmp_path / "no" / "p.yaml"]), "-o", "does not exist")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        one_error(run(REC + ["-o", tmp_path / "fifo", "--force"]), "-o", "FIFO")
    assert listing(tmp_path) == (["fifo"] if hasattr(os, "mkfifo") else [])


def test_the_same_file_for_o_and_plot_file_is_refused_before_work(tmp_path, monkeypatch):
    import planner.optimize

    def no_work(*a, **k):
        raise AssertionError("the search ran")

    monkeypatch.setattr(planner.optimize, "recommend", no_work)
    one_error(run(REC + ["-o", tmp_path / "x.svg", "--plot-file", tmp_path / "x.svg"]),
              "-o and --plot-file", "two different files")
    (tmp_path / "real.svg").symlink_to(tmp_path / "x.svg")  # two names, one file
    one_error(run(REC + ["-o", tmp_path / "real.svg", "--plot-file", tmp_path / "x.svg", "--force"]),
              "two different files")


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    out, plot = tmp_path / "plan.yaml", tmp_path / "front.svg"
    # no plan meets the SLO: exit 3, no files
    res = run(["recommend", "--qps", "500", "--max-gpus", "8", "-o", out])
    assert res.exit_code == 3 and listing(tmp_path) == []
    # the disk fills while the plan is written: one error line, no plan, no plot, no temporaries
    pytest.importorskip("matplotlib")
    real_fsync = os.fsync
    calls = []

    def full(fd):
        calls.append(fd)
        if len(calls) == 2:  # the plot went through; the plan does not
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    one_error(run(REC + ["-o", out, "--plot-file", plot]), "-o", "no space left on device")
    assert listing(tmp_path) == []


def test_a_failed_plot_leaves_nothing_behind(tmp_path, monkeypatch):
    import planner.render.charts

    def broken(*a, **k):
        raise InvalidRequestError("--plot-file: cannot draw")

    monkeypatch.setattr(planner.render.charts, "pareto_plot", broken)
    one_error(run(REC + ["-o", tmp_path / "plan.yaml", "--plot-file", tmp_path / "p.png"]), "cannot draw")
    assert listing(tmp_path) == []


def test_a_second_commit_failing_undoes_the_first(tmp_path, monkeypatch):
    outs = files.Outputs()
    a, b = outs.add(tmp_path / "a.txt", "-o"), outs.add(tmp_path / "b.txt", "--plot-file")
    a.stage("A")
    b.stage("B")
    (tmp_path / "b.txt").write_text("someone else's")  # appears between the check and the commit
    with pytest.raises(InvalidRequestError, match="--plot-file: .*b.txt exists"):
        outs.commit()
    assert listing(tmp_path) == ["b.txt"] and (tmp_path / "b.txt").read_text() == "someone else's"


@pytest.mark.parametrize("err,needle", [
    (errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"), (errno.ENAMETOOLONG, "file name too long"),
])
def test_os_errors_while_writing_are_one_line(tmp_path, monkeypatch, err, needle):
    import tempfile

    def failing(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile, "mkstemp", failing)
    one_error(run(REC + ["-o", tmp_path / "plan.yaml"]), "-o", needle)
    assert listing(tmp_path) == []


def test_a_real_long_name_and_a_read_only_directory(tmp_path):
    one_error(run(REC + ["-o", tmp_path / ("a" * 300 + ".yaml")]), "-o", "file name too long")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        one_error(run(REC + ["-o", ro / "plan.yaml"]), "-o", "permission denied")
    finally:
        ro.chmod(0o755)


def test_whatif_plot_file_has_force(tmp_path):
    plot = tmp_path / "w.png"
    plot.write_bytes(b"old")
    args = ["whatif", "--vary", "qps=1,2", "--max-gpus", "16", "--plot-file", plot]
    one_error(run(args), "--plot-file", "exists; pass --force")
    assert plot.read_bytes() == b"old"
    pytest.importorskip("matplotlib")
    res = run(args + ["--force"])
    assert res.exit_code == 0, res.output
    assert plot.read_bytes()[:4] == b"\x89PNG" and listing(tmp_path) == ["w.png"]


def test_of_concurrent_writers_exactly_one_wins(tmp_path):
    target = tmp_path / "plan.yaml"
    n = 8
    ready = threading.Barrier(n)
    results: list = [None] * n

    def writer(i):
        try:
            out = files.Output(target, "-o")  # every writer passes the check...
            out.stage(f"writer {i}\n")
            ready.wait(timeout=10)  # ...and they all commit at once
            out.commit()
            results[i] = "ok"
        except InvalidRequestError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results.count("ok") == 1, results
    assert all("exists; pass --force" in r for r in results if r != "ok")
    winner = results.index("ok")
    assert target.read_text() == f"writer {winner}\n"
    assert listing(tmp_path) == ["plan.yaml"]


# --------------------------------------------------------------------------------------------
# Encoding and pipes
# --------------------------------------------------------------------------------------------


def test_ascii_fallback_handler():
    import codecs

    from planner import cli as cli_mod

    codecs.register_error("pdplan-ascii", cli_mod._ascii_fallback)
    assert "a\u2026b \u00d7 \u2264 \u2588 \u2014 \u4e2d".encode("ascii", "pdplan-ascii") == b"a...b x <= # - ?"
    assert "\udcff.csv".encode("utf-8", "pdplan-ascii") == b"\xff.csv"


def test_ascii_stdout_gets_stand_ins(monkeypatch):
    """The entry point on an ASCII stdout (LANG=C): no UnicodeEncodeError, ASCII stand-ins."""
    from planner import cli as cli_mod

    buf, err = io.BytesIO(), io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buf, encoding="ascii", errors="strict"))
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(err, encoding="ascii", errors="strict"))
    with pytest.raises(SystemExit) as exc:
        cli_mod.main(["kv", "--seq-len", "2k", "--gpu", "h100-sxm", "--tp", "8", "--batch", "8"])
    sys.stdout.flush()
    assert exc.value.code == 0
    out = buf.getvalue()
    # the bars' blocks become "#" (tables no longer truncate with "\u2026", issue 14)
    assert out.isascii() and b"#" in out and b"?" not in out


def test_a_closed_pipe_is_quiet(monkeypatch):
    from planner import cli as cli_mod

    class Closed(io.TextIOBase):
        encoding = "utf-8"

        def write(self, s):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    err = io.StringIO()
    monkeypatch.setattr(sys, "stdout", Closed())
    monkeypatch.setattr(sys, "stderr", err)
    for argv in (["catalog"], ["catalog", "--json"]):
        with pytest.raises(SystemExit) as exc:
            cli_mod.main(argv)
        assert exc.value.code == 141
    assert err.getvalue() == ""


def test_interrupt_is_exit_130_and_leaves_no_file(tmp_path, monkeypatch):
    import planner.optimize

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(planner.optimize, "recommend", interrupted)
    res = run(REC + ["-o", tmp_path / "plan.yaml"])
    assert res.exit_code == 130
    assert res.output.strip() == "Interrupted." and "Aborted" not in res.output
    assert listing(tmp_path) == []


def _pdplan(args, cwd, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.update(kw.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "planner", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("env", [{"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"},
                                 {"PYTHONIOENCODING": "ascii"}])
def test_c_locale_subprocess(tmp_path, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIO", "PYTHONUTF8"))}
    # (a narrow terminal: cells fold onto the next line rather than being cut with an ellipsis,
    # and what is printed stays ASCII under the C locale)
    p = subprocess.run([sys.executable, "-m", "planner", "kv", "--seq-len", "2k"], cwd=tmp_path,
                       env={**base, "PYTHONPATH": str(REPO), "COLUMNS": "30", **env}, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.isascii() and b"KB per token" in p.stdout and p.stderr == b""


@pytest.mark.slow
@pytest.mark.parametrize("args", [["catalog"], ["catalog", "--json"], REC])
def test_broken_pipe_subprocess(tmp_path, args):
    p = _pdplan(args, tmp_path)
    p.stdout.close()  # the reader is gone before the first line
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141 and err == b""


@pytest.mark.slow
@pytest.mark.parametrize("sig,code,line", [(signal.SIGINT, 130, b"Interrupted."),
                                           (signal.SIGTERM, 143, b"Terminated.")])
def test_signal_during_verify_subprocess(tmp_path, sig, code, line):
    p = _pdplan(["recommend", "--qps", "80", "--ttft-slo", "200ms", "--verify", "--requests", "200000",
                 "-o", "plan.yaml"], tmp_path)
    time.sleep(1.0)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("finished before the signal")
    assert p.returncode == code, err
    assert err.strip() == line and b"Traceback" not in err and b"Aborted" not in err
    assert listing(tmp_path) == []


@pytest.mark.slow
def test_concurrent_writers_subprocess(tmp_path):
    procs = [_pdplan(REC + ["-o", "plan.yaml"], tmp_path) for _ in range(4)]
    done = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    codes = sorted(c for c, _ in done)
    assert codes == [0, 2, 2, 2], done
    assert all("exists; pass --force" in e for c, e in done if c == 2)
    assert listing(tmp_path) == ["plan.yaml"]


# --------------------------------------------------------------------------------------------
# Plans carry their trace by content
# --------------------------------------------------------------------------------------------


def test_a_plan_with_a_trace_evaluates_from_anywhere(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "t.csv").write_text(TRACE)
    monkeypatch.chdir(work)
    args = ["recommend", "--qps", "4", "--max-gpus", "16", "--trace", "t.csv"]
    written = result_of(run(args + ["--json"]).stdout)["plan"]
    assert run(args + ["-o", "plan.yaml"]).exit_code == 0
    doc = written["inputs"]["trace"]
    assert doc["file"] == "t.csv" and doc["requests"] == 4
    assert doc["sha256"] == hashlib.sha256(TRACE.encode()).hexdigest()
    (work / "t.csv").unlink()
    monkeypatch.chdir(elsewhere)
    res = run(["evaluate", work / "plan.yaml", "--json"])
    assert res.exit_code == 0, res.output
    ev = result_of(res.stdout)["plan"]
    assert ev["metrics"] == written["metrics"] and ev["inputs"]["trace"] == doc
    sim = run(["simulate", work / "plan.yaml", "--requests", "200", "--json"])
    assert sim.exit_code == 0, sim.output


def test_a_tampered_embedded_trace_is_refused(tmp_path):
    import yaml

    (tmp_path / "t.csv").write_text(TRACE)
    plan = tmp_path / "plan.yaml"
    assert run(["recommend", "--qps", "4", "--max-gpus", "16", "--trace", tmp_path / "t.csv", "-o", plan]).exit_code == 0
    doc = yaml.safe_load(plan.read_text())
    for key, value, needle in (("requests", 5, "expected requests = 5"), ("requests", 0, "requests"),
                               ("lengths", "!!!", "not an encoded trace"), ("sha256", "x", "sha256")):
        bad = json.loads(json.dumps(doc))
        bad["inputs"]["trace"][key] = value
        p = tmp_path / "bad.yaml"
        p.write_text(yaml.safe_dump(bad, sort_keys=False))
        one_error(run(["evaluate", p]), "inputs.trace", needle)


def test_an_older_plan_naming_its_trace_file_still_loads(tmp_path, monkeypatch):
    import yaml

    (tmp_path / "t.csv").write_text(TRACE)
    plan = tmp_path / "plan.yaml"
    assert run(["recommend", "--qps", "4", "--max-gpus", "16", "--trace", tmp_path / "t.csv", "-o", plan]).exit_code == 0
    doc = yaml.safe_load(plan.read_text())
    doc["inputs"]["trace"] = "t.csv"  # relative to the plan's directory
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.chdir(tmp_path.parent)
    assert run(["evaluate", plan]).exit_code == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 1_000_000), st.integers(1, 1_000_000)), min_size=1, max_size=300))
def test_embedded_lengths_round_trip(pairs):
    from planner.workload import Trace, decode_lengths, encode_lengths

    t = Trace("t.csv", np.array([a for a, _ in pairs]), np.array([b for _, b in pairs]))
    isl, osl = decode_lengths(encode_lengths(t.isl, t.osl), len(pairs), "t")
    assert np.array_equal(isl, t.isl) and np.array_equal(osl, t.osl)
    assert sorted(pairs) == list(zip(isl.tolist(), osl.tolist()))


# --------------------------------------------------------------------------------------------
# --catalog DIR and PDPLAN_CATALOG=DIR are one thing
# --------------------------------------------------------------------------------------------


def test_catalog_flag_and_environment_agree(tmp_path, monkeypatch):
    from planner.catalog import load_catalog

    d = tmp_path / "cat"
    (d / "models").mkdir(parents=True)
    src = (REPO / "models" / "llama-3.1-8b.yaml")
    if not src.exists():
        src = sorted((REPO / "models").glob("*.yaml"))[0]
    text = src.read_text().replace(f"id: {src.stem}", "id: my-model", 1)
    (d / "models" / "my-model.yaml").write_text(text)
    flag = run(["--catalog", d, "catalog", "models", "--json"])
    load_catalog.cache_clear()
    monkeypatch.setenv("PDPLAN_CATALOG", str(d))
    env = run(["catalog", "models", "--json"])
    assert flag.exit_code == env.exit_code == 0, (flag.output, env.output)
    assert flag.stdout == env.stdout and "my-model" in flag.stdout
    # a broken entry: the same error either way, also for evaluate of a plan
    monkeypatch.delenv("PDPLAN_CATALOG")
    plan = tmp_path / "plan.yaml"
    assert run(REC + ["-o", plan]).exit_code == 0
    (d / "models" / "broken.yaml").write_text("id: broken\nnum_layers: -1\n")
    load_catalog.cache_clear()
    by_flag = run(["--catalog", d, "evaluate", plan])
    monkeypatch.setenv("PDPLAN_CATALOG", str(d))
    load_catalog.cache_clear()
    by_env = run(["evaluate", plan])
    assert by_flag.exit_code == by_env.exit_code == 2
    assert by_flag.output == by_env.output and "broken.yaml" in by_flag.output


def test_only_the_plan_itself_carries_the_trace_rows(tmp_path):
    (tmp_path / "t.csv").write_text(TRACE)
    doc = result_of(run(["recommend", "--qps", "4", "--max-gpus", "16", "--trace", tmp_path / "t.csv",
                          "--json"]).stdout)
    assert "lengths" in doc["plan"]["inputs"]["trace"]
    assert doc["alternatives"] and all("lengths" not in a["inputs"]["trace"] and a["inputs"]["trace"]["sha256"]
                                       == doc["plan"]["inputs"]["trace"]["sha256"] for a in doc["alternatives"])
    rows = result_of(run(["whatif", "--vary", "qps=2,4", "--max-gpus", "16", "--trace", tmp_path / "t.csv",
                           "--json"]).stdout)
    assert "lengths" not in json.dumps(rows)
