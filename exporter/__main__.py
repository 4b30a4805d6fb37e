"""``python -m exporter``: see exporter/cli.py."""
from .cli import main

raise SystemExit(main())
