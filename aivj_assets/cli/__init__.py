"""The ``aivj`` command line: its verbs, the tour, ``up`` and ``reset``."""
