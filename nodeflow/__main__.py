"""``python -m nodeflow``: the same as the ``nodeflow`` command."""

from nodeflow.cli import main

raise SystemExit(main())
