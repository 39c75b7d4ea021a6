"""python -m cli: the same as the `dataarch` command."""

import sys

from cli.main import main

sys.exit(main())
