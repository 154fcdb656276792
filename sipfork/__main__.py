"""python -m sipfork"""

import sys

from sipfork.cli import main

sys.exit(main())
