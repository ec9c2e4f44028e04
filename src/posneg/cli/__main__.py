"""``python -m posneg.cli``: the same as the ``posneg`` command."""

from posneg.cli import main

main()
