"""``python -m devices``: simulated bedside monitors and a load generator for streamproc."""

import sys

from devices.cli import main

sys.exit(main())
