"""``python -m vistok`` (and ``torchrun -m vistok``) runs the CLI."""

import sys

from vistok.cli import main

sys.exit(main())
