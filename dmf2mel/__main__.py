"""``python -m dmf2mel``: see :mod:`dmf2mel.cli`."""

from dmf2mel.cli import main

raise SystemExit(main())
