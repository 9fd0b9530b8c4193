"""``python -m dynasor_cli``: the ``dynasor`` command."""

from dynasor_cli import main

main()
