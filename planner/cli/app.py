"""The ``pdplan`` group and the console-script entry point: errors become one ``Error:`` line
with the contract's exit code (and a document under ``--json``), Ctrl-C, closed pipes and
narrow stream encodings are handled here, outside any command."""

from __future__ import annotations

import sys
import warnings

import click

from planner import __version__
from planner.cli.options import CONTEXT_SETTINGS, FORMAT_KEY, _document_format, emit_error

# --------------------------------------------------------------------------------------------
# Errors: one line, the right exit code, no traceback unless --debug
# --------------------------------------------------------------------------------------------


class _UserError(click.ClickException):
    """A library error shown as ``Error: <message>`` with the library's exit code."""

    def __init__(self, message: str, exit_code: int = 2):
        # Bad input is one line; "no plan" (exit 3) keeps its lines: one per approach.
        text = str(message) if exit_code == 3 else " ".join(str(message).split("\n"))
        super().__init__(text)
        self.exit_code = exit_code  # type: ignore[misc, unused-ignore]  # click 8.5 declares it per class; ours varies


class PdplanGroup(click.Group):
    """Turns exceptions from any subcommand into click errors with the contract's exit codes."""

    def parse_args(self, ctx, args):
        # A bare `pdplan` shows the help and succeeds (click 8.2+ would exit 2 with no Error: line).
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        pending = getattr(ctx, "_protected_args", None)  # click 8.2+ (protected_args before)
        pending = ctx.protected_args if pending is None else pending
        args = [*pending, *ctx.args]
        asked = _document_format(args)
        try:
            return self._invoke(ctx)
        except click.ClickException as exc:  # bad input, no plan, a bug: also as a document
            fmt = ctx.meta.get(FORMAT_KEY) or asked
            if fmt in ("json", "yaml"):
                command = args[0] if args and args[0] in self.commands else None
                emit_error(fmt, exc.format_message(), exc.exit_code, command=command)
            raise

    def _invoke(self, ctx):
        from planner.errors import PdplanError

        debug = bool(ctx.params.get("debug"))
        try:
            with warnings.catch_warnings():
                if not debug:  # numeric warnings of overloaded queues are not for users
                    warnings.simplefilter("ignore", RuntimeWarning)
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C: one line, exit 130 (no output file moved in)
            if debug:
                import traceback

                traceback.print_exc()
            _interrupted(exc)
        except BrokenPipeError:  # the reader of our output went away (`pdplan ... | head`)
            _quiet_stdout()
            raise click.exceptions.Exit(EXIT_PIPE) from None
        except PdplanError as exc:
            if debug:
                import traceback

                traceback.print_exc()
            raise _UserError(str(exc), getattr(exc, "exit_code", 2)) from None
        except Exception as exc:
            if debug:
                raise
            msg = " ".join(str(exc).split())
            raise _UserError(f"internal error: {type(exc).__name__}: {msg} "
                             "(run with --debug for the traceback)", 1) from None


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that temporary files are removed."""


def _interrupted(exc=None):
    term = isinstance(exc, _Terminated)
    try:
        click.echo("Terminated." if term else "Interrupted.", err=True)
    except (OSError, ValueError):
        pass
    raise click.exceptions.Exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail a second time."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (CliRunner)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


# Characters pdplan or its tables can print, and what they become where the terminal's encoding
# (LANG=C, PYTHONIOENCODING=ascii) has no room for them; anything else becomes "?".
ASCII_FALLBACK = {"\u2026": "...", "\u00d7": "x", "\u2264": "<=", "\u2265": ">=", "\u2014": "-",
                  "\u2013": "-", "\u2212": "-", "\u00b5": "u", "\u03bc": "u", "\u2588": "#",
                  "\u2500": "-", "\u2502": "|", "\u2192": "->", "\u00b1": "+/-", "\u2248": "~",
                  "\u00b7": ".", "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}


def _ascii_fallback(exc):
    """Encode-error handler ``pdplan-ascii``: one character at a time, an ASCII stand-in (a
    file name's undecodable byte goes back out as that byte)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    ch = exc.object[exc.start]
    if "\udc80" <= ch <= "\udcff":
        return bytes([ord(ch) - 0xDC00]), exc.start + 1
    return ASCII_FALLBACK.get(ch, "?"), exc.start + 1


def _setup_streams() -> None:
    """Let stdout and stderr print what their encoding cannot hold (ASCII stand-ins), so output
    works under LANG=C or PYTHONIOENCODING=ascii as well as in a UTF-8 terminal."""
    import codecs

    codecs.register_error("pdplan-ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", "strict") in ("strict", "surrogateescape", None):
            try:
                stream.reconfigure(errors="pdplan-ascii")
            except (AttributeError, ValueError, OSError):
                pass


# --------------------------------------------------------------------------------------------
# The group
# --------------------------------------------------------------------------------------------


@click.group("pdplan", cls=PdplanGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="pdplan")
@click.option("--debug", is_flag=True,
              help="Show the traceback of any error (internal errors, and user errors above their "
                   "one-line message) and numeric warnings.")
@click.option("--catalog", "catalog_dir", metavar="DIR", envvar="PDPLAN_CATALOG",
              type=click.Path(exists=True, file_okay=False),
              help="Directory of extra catalog entries (models/, gpus/, links/); they override "
                   "built-ins with the same id. Also PDPLAN_CATALOG.")
@click.pass_context
def cli(ctx, debug, catalog_dir):
    """Capacity planner for LLM inference: unified, chunked-prefill or disaggregated serving,
    sized to latency SLOs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["catalog_dir"] = catalog_dir


def main(argv=None) -> None:
    """Console-script entry point (``pdplan``) and ``python -m planner``: the command, then
    Ctrl-C (exit 130, one line), a closed pipe (exit 141, silent) and streams whose encoding
    cannot hold every character handled here, outside any command."""
    import signal

    _setup_streams()

    def on_term(signum, frame):  # `kill`: unwind like Ctrl-C, so temporary files are removed
        raise _Terminated

    try:
        old_term = signal.signal(signal.SIGTERM, on_term)
    except (AttributeError, ValueError, OSError):  # no SIGTERM here, or not the main thread
        old_term = None
    try:
        cli.main(args=argv, prog_name="pdplan")
        code = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt as exc:
        try:
            _interrupted(exc)
        except click.exceptions.Exit as done:
            code = done.exit_code
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_PIPE
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_PIPE
    except (OSError, ValueError):
        pass
    sys.exit(code)
