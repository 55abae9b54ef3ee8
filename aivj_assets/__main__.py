"""``python -m aivj_assets`` is the ``aivj`` command line."""

import sys

from aivj_assets.cli.main import main

sys.exit(main())
