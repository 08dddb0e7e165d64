"""`python -m dlproxy` is `dlproxy`."""

import sys

from .cli import main

sys.exit(main())
