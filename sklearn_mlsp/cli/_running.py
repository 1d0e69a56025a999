"""How every command runs: where its text goes, its errors and its exit codes."""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings

import click


class InputError(click.ClickException):
    """Unusable input: exit code 2, like a usage error."""

    exit_code = 2


class ImagesFailed(Exception):
    """Some images failed under ``--errors raise``: exit code 1."""


class OutputError(click.ClickException):
    """An output file (``--out``, ``--sheet``, ``--plot``, ``--model``) cannot be written: exit code 3."""

    exit_code = 3


#: What each exit code means (docs/cli.rst lists the same).
EXIT_CODES = {
    0: "success",
    1: "some input images could not be read (each is named; the others were processed)",
    2: "usage or input error (an option, a missing or refused file, a label file without the column)",
    3: "an output file cannot be written (its folder is missing or not writable)",
    4: "an unexpected internal error (please report it)",
    130: "interrupted (Ctrl-C)",
    141: "stdout was closed early (as by `| head`): the command stopped writing",
}



def check_output_path(path, option: str) -> None:
    """Refuse an output path whose folder is missing or not writable, before any work is done."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise OutputError(f"{option} {path}: is a folder; give a file name.")
    if not os.path.isdir(folder):
        raise OutputError(f"{option} {path}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{option} {path}: the folder {folder} is not writable.")


def check_outputs_spare_inputs(outputs, inputs) -> None:
    """Refuse an output file that is an input (an image, a list, the model) or another output, before any work.

    ``outputs`` holds ``(option, path)`` pairs; ``path`` may be None (not asked for).
    """
    taken = {os.path.realpath(p): f"{p}, an input of this command" for p in inputs}
    for option, path in outputs:
        if path is None:
            continue
        if os.path.realpath(path) in taken:
            raise InputError(f"{option} {path}: that is {taken[os.path.realpath(path)]}; writing there would "
                             "overwrite it. Give another file name.")
        taken[os.path.realpath(path)] = f"the file of {option}"


def _write(path, option: str, write) -> None:
    """Run ``write()``; an OSError (a full disk, a folder removed meanwhile) is an output error."""
    try:
        write()
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write it ({exc.strerror or exc}).") from None


# --------------------------------------------------------------------------- output




class Output:
    """Where a command's text goes, given ``--quiet`` and ``--json``."""

    def __init__(self, command: str, quiet: bool, as_json: bool):
        self.command = command
        self.quiet = quiet
        self.as_json = as_json
        self.rows_on_stdout = False  # --format without --out: stdout holds the rows

    def say(self, text: str = "") -> None:
        """Human-readable text: stdout, or stderr under ``--json`` or rows on stdout; nothing under ``--quiet``."""
        if not self.quiet:
            click.echo(text, err=self.as_json or self.rows_on_stdout)

    def warn(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"warning: {text}", err=True)

    def summary(self, data: dict) -> None:
        if self.as_json:
            click.echo(json.dumps({"command": self.command, **data}, default=_json_default))


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    return str(value)



def _run(command):
    """Shared options and error handling of every command."""

    @click.option("-q", "--quiet", is_flag=True, help="No progress bars and no text; errors still go to stderr.")
    @click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON summary on stdout.")
    @click.pass_context
    @functools.wraps(command)
    def wrapper(ctx, quiet, as_json, **kwargs):
        out = Output(ctx.info_name, quiet, as_json)

        def show(message, category, filename, lineno, file=None, line=None):
            out.warn(str(message))

        old_show = warnings.showwarning
        warnings.showwarning = show
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.filterwarnings("ignore", message=r".*could not be read and have NaN features")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
                warnings.showwarning = show
                code = command(out, **kwargs) or 0
        except (InputError, click.UsageError) as exc:
            _fail(out, exc.format_message(), 2)
        except OutputError as exc:
            _fail(out, exc.format_message(), 3)
        except ImagesFailed as exc:
            _fail(out, str(exc), 1)
        except KeyboardInterrupt:
            _interrupted()
        except BrokenPipeError:
            _stdout_closed()
        except Exception as exc:  # known input problems become exit code 2
            if os.environ.get("MLSP_DEBUG"):
                raise
            _fail(out, _describe_error(exc), 2 if _is_input_error(exc) else 4)
        finally:
            warnings.showwarning = old_show
        ctx.exit(code)

    wrapper.__doc__ = command.__doc__
    return wrapper


_EXIT_AT_ONCE = False  # set by main(): the console script, not an in-process caller


def _interrupted():
    """Ctrl-C: say so and exit 130, at once from the console script.

    The library has committed what was computed and stopped its decoding
    workers by the time the interrupt gets here; the console script then
    skips the interpreter's teardown (a second or more with PyTorch loaded),
    so Ctrl-C comes back at once.
    """
    click.echo("Error: interrupted; everything computed so far is stored.", err=True)
    if _EXIT_AT_ONCE:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


def _stdout_closed():
    """The reader of stdout went away (``mlsp score ... | head``): stop quietly, as a killed pipeline does (141)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush would fail again
    sys.exit(141)


def _is_input_error(exc) -> bool:
    from ..backbones import WeightsUnavailableError
    from ..model_io import ModelFileError

    return isinstance(exc, (FileNotFoundError, ModelFileError, WeightsUnavailableError, ValueError, TypeError))


def _describe_error(exc) -> str:
    text = str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.filename not in text:
        text = f"{exc.filename}: {text}"
    return text


def _fail(out: Output, message: str, code: int):
    click.echo(f"Error: {message}", err=True)
    if out.as_json:
        click.echo(json.dumps({"command": out.command, "ok": False, "exit_code": code, "error": message}))
    sys.exit(code)


# --------------------------------------------------------------------------- inputs
