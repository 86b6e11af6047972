"""python -m mudpuppy_monitor"""

import sys

from mudpuppy_monitor.cli import main

sys.exit(main())
