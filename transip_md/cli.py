"""Command line: ``transip-md <command>``. Each command lives in the module of its layer.

Every command module is imported explicitly below and exposes ``register(subparsers)``; commands that
need an optional dependency import it when invoked and say what to install if it is missing.

Errors: a user error (see :func:`user_error_types`: a missing or foreign file, bad input data, a bad
configuration or flag combination; and ``SystemExit("message")`` raised by a command) prints ONE line,
``transip-md <command>: error: <message>``, on stderr and exits with code 2 (``SystemExit(2)``), like
argparse's own usage errors. Anything else is a bug and keeps its traceback (exit code 1). ``--debug``
(before or after the command) shows the traceback of user errors too. Table: docs/errors.md, "CLI".

Output: command results (tables, JSON, "wrote FILE") are printed to stdout by the command modules;
progress and notes from the library go through ``logging`` (loggers ``transip_md.*``), which :func:`main`
sends to stdout as plain lines (INFO, or DEBUG with ``--debug``). Library code never prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import NoReturn

from . import __version__, demo
from .lammps import commands as lammps_commands
from .model import commands as model_commands
from .openmm import commands as openmm_commands
from .train import commands as train_commands

#: Subcommand providers in help order. The export sources of the training and LAMMPS layers attach to the
#: model layer's ``export`` command, so model_commands comes first.
COMMAND_MODULES = (model_commands, train_commands, openmm_commands, lammps_commands, demo)

#: (module, class) of the user-error exceptions raised below the CLI, in addition to USER_OS_ERRORS.
USER_ERROR_CLASSES = (
    ("transip_md.validation", "InputError"),  # engine input: element, charge/spin parity, positions
    ("transip_md.model.contract", "ModelFileError"),  # missing, foreign or unsupported model file
    ("transip_md.train.data", "DataError"),  # a training/evaluation file or frame that cannot be used
    ("transip_md.train.checkpoint", "CheckpointError"),  # missing, truncated or foreign checkpoint
    ("transip_md.train.config", "ConfigError"),  # training configuration, resume flags, model rule
    ("ase.io.formats", "UnknownFileTypeError"),  # a structure file ASE cannot read
)
#: OS errors on the paths a user gives.
USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` for options with a real default (not None, not False, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transip-md",
        description="TransIP interatomic potentials: label, train, evaluate, export, and run MD (OpenMM, LAMMPS).",
        formatter_class=_DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"transip-md {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors; DEBUG log level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    for name, command in sub.choices.items():
        command.formatter_class = _DefaultsFormatter
        for action in command._actions:  # an option without help text still shows its default
            if action.help is None and action.option_strings and action.default not in (None, False):
                action.help = "(default: %(default)s)"
        command.prog = f"transip-md {name}"
        # also after the command; SUPPRESS keeps the top-level value when it is not repeated here
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that are a user's mistake rather than a bug (printed as one line, exit code 2).

    A class whose module was never imported cannot have been raised, so only loaded modules are consulted
    (this keeps the error path free of imports).
    """
    types: list[type[BaseException]] = list(USER_OS_ERRORS)
    for module_name, class_name in USER_ERROR_CLASSES:
        module = sys.modules.get(module_name)
        if module is not None:
            types.append(getattr(module, class_name))
    return tuple(types)


class _StdoutHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stdout`` (which tests and callers may replace)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # noqa: D102
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(debug: bool = False) -> None:
    """Send the ``transip_md`` loggers to stdout as plain lines (once per process)."""
    logger = logging.getLogger("transip_md")
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def _fail(command: str, message: str, cause: BaseException) -> NoReturn:
    """Print ``transip-md COMMAND: error: MESSAGE`` (one line) on stderr and exit with code 2.

    Raises SystemExit (code 2, the line as its text), as argparse does for usage errors, so in-process
    callers of :func:`main` see the same status as the shell.
    """
    message = " ".join(str(message).split()) or type(cause).__name__
    prefix = f"transip-md {command}: "
    message = message[len(prefix) :] if message.startswith(prefix) else message
    message = message[len("error: ") :] if message.startswith("error: ") else message
    line = f"{prefix}error: {message}"
    print(line, file=sys.stderr)
    exit_ = SystemExit(line)
    exit_.code = 2
    raise exit_ from cause


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug)
    try:
        result = args.func(args)
    except SystemExit as exc:  # commands raise SystemExit("transip-md CMD: message") for usage errors
        if not isinstance(exc.code, str):
            raise
        if args.debug:
            traceback.print_exc()
        _fail(args.command, exc.code, exc)
    except BrokenPipeError:  # stdout closed early (`transip-md ... | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"transip-md {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug or not isinstance(exc, user_error_types()):
            raise
        _fail(args.command, _message(exc), exc)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
