"""``python -m sandboxkit``: the same as the ``sandboxkit`` command."""

from ._cli_entry import main

main()
