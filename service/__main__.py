"""``python -m service``: SIGHUP is ignored before anything else runs, then the command line."""
import signal
import sys

if sys.argv[1:2] == ["serve"]:  # a hang-up while the imports run must not kill a starting server
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

from .cli import main  # noqa: E402

raise SystemExit(main())
