"""``python -m kmixup.experiments``: see :mod:`kmixup.experiments`."""

from .run import main

main()
