"""The ``dynasor`` command, the top layer: ``certaindex <- algorithms <- dynasor <- eval <- dynasor_cli``.

One module per subcommand (``dynasor_cli/<name>.py``), each with a ``register(app)``. Heavy
imports stay inside the command bodies, so ``dynasor --help`` is fast.
"""

import importlib

import typer

__all__ = ["COMMANDS", "app", "main"]

COMMANDS = ("bench", "calibrate", "demo", "eval", "serve")
"""The subcommands, each the module of that name."""

app = typer.Typer(
    name="dynasor",
    help="Serve LLM reasoning programs with Certaindex early exit and gang scheduling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    app()
