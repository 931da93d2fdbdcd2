"""The single place where a failing ``varpo`` command becomes ONE line on stderr with a non-zero exit status.

Every ``varpo`` command (``demo``, ``sft``, ``train``, ``eval``, ``sweep``, ``report``, also as ``python -m varpo`` or
``python -m varpo.experiments``) runs inside :class:`OneLineErrors`, the click group of the app, so no command has
to catch anything itself:

* usage errors (unknown option, missing argument, a missing config file, ``--jobs 0``) and configuration or input
  errors (``ValueError``, ``TypeError``, ``OSError``, YAML errors: a bad key, value or combination, an unreadable
  file; a ``VARPO_PLUGINS`` module or ``varpo.methods`` entry point that fails to import; a run stopped by
  ``judge_max_failure_rate``) print ``error: <message>`` on one line and exit with status 2;
* anything else is a bug or a crash, not a bad input: ``error: <Type>: <message>`` on one line, exit status 1, and
  the full traceback is written to a file whose path the line names, so nothing is lost.

``VARPO_TRACEBACK=1`` re-raises instead (the interpreter prints the traceback), for debugging.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from typing import Any

import typer
import typer.core

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)
USAGE_STATUS = 2
CRASH_STATUS = 1


def _base(cls: type, name: str) -> type:
    """The class called ``name`` among ``cls``'s bases: typer >= 0.2x vendors click (``typer._click``), older
    typer uses click itself, so the usage-error classes are found through ``typer.BadParameter``."""
    return next(c for c in cls.__mro__ if c.__name__ == name)


CLICK_ERROR = _base(typer.BadParameter, "ClickException")
USAGE_ERROR = _base(typer.BadParameter, "UsageError")


def _user_errors() -> tuple[type[BaseException], ...]:
    from varpo.judge.judge import JudgeOutageError  # judge_max_failure_rate stopped the run: a verdict, not a bug
    from varpo.registry import PluginError  # a plug-in that fails to import: its name and error, not a traceback

    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        return (*USER_ERRORS, PluginError, JudgeOutageError)
    return (*USER_ERRORS, PluginError, JudgeOutageError, yaml.YAMLError)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def describe(err: BaseException) -> str:
    """The one-line message of a user error: our ValueErrors already name the field; other types get their name."""
    message = one_line(err) or type(err).__name__
    if isinstance(err, ValueError) and type(err).__module__.startswith(("varpo", "builtins")):
        return message
    return f"{type(err).__name__}: {message}"


def _crash_file(err: BaseException) -> str | None:
    try:
        fd, path = tempfile.mkstemp(prefix="varpo-error-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("$ " + " ".join(sys.argv) + "\n")
            traceback.print_exception(err, file=f)
    except OSError:
        return None
    return path


def _print(message: str) -> None:
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + one_line(message), err=True)


def _no_flag_metavar() -> None:
    """Help without a ``<bool>`` type column for on/off flags (typer >= 0.2x shows one; a flag takes no value)."""
    option = getattr(typer.core, "TyperOption", None)
    original = getattr(option, "display_type_rich", None)
    if original is None or getattr(original, "varpo_flags", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich.varpo_flags = True
    option.display_type_rich = display_type_rich


_no_flag_metavar()


class OneLineErrors(typer.core.TyperGroup):
    """The app's click group: runs the command and turns every failure into one line (see the module doc)."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode or os.environ.get("VARPO_TRACEBACK", "").lower() in ("1", "true", "yes"):
            return super().main(args, prog_name, complete_var, standalone_mode=standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            _print("aborted")
            sys.exit(CRASH_STATUS)
        except CLICK_ERROR as err:
            message = err.format_message()
            ctx = getattr(err, "ctx", None)
            if isinstance(err, USAGE_ERROR) and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            _print(message)
            sys.exit(err.exit_code)
        except _user_errors() as err:
            _print(describe(err))
            sys.exit(USAGE_STATUS)
        except Exception as err:  # noqa: BLE001 - the boundary: one line + the traceback kept in a file
            where = _crash_file(err)
            kept = f" (traceback: {where}; VARPO_TRACEBACK=1 prints it)" if where else ""
            _print(f"{type(err).__name__}: {one_line(err)}{kept}")
            sys.exit(CRASH_STATUS)
        # click returns the exit code of a typer.Exit / ctx.exit(n) (int), else the command's return value
        sys.exit(rv if isinstance(rv, int) else 0)
