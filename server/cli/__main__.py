"""``python -m server.cli``: the ``drylocal`` command, as the supervisor and the tests run it."""

import sys

from server.cli import main

sys.exit(main())
