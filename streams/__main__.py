"""`python -m streams` is the `slatestream` command."""

import sys

from streams.cli import main

sys.exit(main())
