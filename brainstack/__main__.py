"""``python -m brainstack``: the same CLI as the ``brainstack`` command."""

import sys

from brainstack.cli import main

sys.exit(main())
