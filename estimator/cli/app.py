"""The ``gpucost`` command: the typer app, its commands and the one place where errors become
``Error: ...`` on stderr with an exit code (2 usage or unknown name, 1 other domain errors).

Each command lives in its own module of this package; they parse options, call the library,
render and print. Nothing outside ``estimator/cli/`` prints or exits.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from estimator import __version__
from estimator.errors import GpucostError
from estimator.cli import catalogs, estimate, models, plot, profile, validate

# -h as well as --help everywhere; help laid out to 120 columns so option names are never cut
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}

app = typer.Typer(
    name="gpucost",
    help="What will training this model cost, and what does my GPU really deliver?",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)
models_app = typer.Typer(help="List the model catalog, or show one model's parameters, FLOPs and memory.",
                         invoke_without_command=True, context_settings=CONTEXT, rich_markup_mode=None)
app.add_typer(models_app, name="models")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpucost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """gpucost: training compute and cost estimates, and measured GPU throughput."""


app.command("estimate")(estimate.estimate_cmd)
app.command("compare")(estimate.compare_cmd)
app.command("gpus")(catalogs.gpus_cmd)
app.command("prices")(catalogs.prices_cmd)
app.command("systems")(catalogs.systems_cmd)
app.command("stacks")(catalogs.stacks_cmd)
app.command("datasets")(catalogs.datasets_cmd)
models_app.callback()(catalogs.models_cmd)
models_app.command("show")(models.show)
app.command("validate")(validate.validate_cmd)
app.command("profile")(profile.profile)
app.command("plot")(plot.plot_cmd)


# -- entry point ---------------------------------------------------------------------------------

DEBUG_ENV = "GPUCOST_DEBUG"  # set to 1 to get the traceback of an unexpected error
SIGPIPE_EXIT = 128 + 13  # what a shell reports for a writer whose reader went away (`| head`)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests capture stdout)
        pass


def _error(message: str) -> None:
    try:
        typer.echo(f"Error: {message}", err=True)
    except OSError:  # stderr closed too: nothing left to tell
        pass


_COMMANDS = {info.name: info for info in app.registered_commands}


def _app_for(argv: list[str]) -> typer.Typer:
    """The app to build for ``argv``: only the invoked command when it is a plain one (typer
    builds every command's options otherwise, a tenth of a start-up), else the whole app (help,
    completion, the ``models`` group, anything unusual)."""
    name = next((a for a in argv if not a.startswith("-")), None)
    if name not in _COMMANDS or any(a in ("--install-completion", "--show-completion", "--version") for a in argv) \
            or any(k.endswith("_COMPLETE") for k in os.environ):
        return app
    one = typer.Typer(name="gpucost", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      context_settings=CONTEXT, rich_markup_mode=None)
    one.callback()(_root)
    one.registered_commands.append(_COMMANDS[name])
    return one


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code. Every failure is one ``Error: ...`` line on stderr:
    domain errors with their own code, usage errors 2, Ctrl-C 130, a closed stdout (``| head``)
    ends quietly with the SIGPIPE status, and an unexpected error 70 (``GPUCOST_DEBUG=1`` shows
    its traceback). Bare ``gpucost`` prints the help, exit 0."""
    command = typer.main.get_command(_app_for(sys.argv[1:] if argv is None else argv))
    try:
        try:
            result = command.main(args=argv, prog_name="gpucost", standalone_mode=False)
        finally:
            sys.stdout.flush()
    except GpucostError as exc:
        _error(str(exc))
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _error("interrupted (Ctrl-C)")
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return SIGPIPE_EXIT
    except SystemExit as exc:
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":  # click's own answer to a closed pipe (EPIPE)
            _silence_stdout()
            return SIGPIPE_EXIT
        return exc.code if isinstance(exc.code, int) else 1
    except OSError as exc:  # a full disk or a closed stdout: say so, no traceback
        if not exc.filename:
            # stdout's buffer still holds what could not be written (a block-buffered stdout, no
            # PYTHONUNBUFFERED): without this the interpreter's last flush fails again at exit,
            # printing "Exception ignored ..." and exiting 120
            _silence_stdout()
        where = f" {exc.filename}" if exc.filename else " the output"
        _error(f"cannot {'read or write' if exc.filename else 'write'}{where}: {exc.strerror or exc}")
        return 1
    except RecursionError:
        _error("the input is nested too deeply")
        return 2
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # click >= 8.2: a group run bare; older click printed help
            typer.echo(exc.format_message())  # type: ignore[attr-defined]
            return 0
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a click/typer usage error
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _error(f"{exc.format_message()}{hint}")
            return int(exc.exit_code)
        if os.environ.get(DEBUG_ENV):
            raise
        _error(f"internal error ({type(exc).__name__}: {exc}); please report it, "
               f"with {DEBUG_ENV}=1 for the traceback")
        return 70
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
