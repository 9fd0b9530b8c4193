"""The ``dynasor`` command. Each subcommand lives in ``dynasor/commands/<name>.py``.

A command module defines ``register(app)``; heavy imports stay inside the command body so
``dynasor --help`` is fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from dynasor import commands

__all__ = ["app", "main"]

app = typer.Typer(
    name="dynasor",
    help="Serve LLM reasoning programs with Certaindex early exit and gang scheduling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{module}").register(app)


_register_commands()


def main() -> None:
    app()
