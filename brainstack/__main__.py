"""``python -m brainstack``: the same CLI as the ``brainstack`` command."""

from brainstack.cli import console_main

console_main()
