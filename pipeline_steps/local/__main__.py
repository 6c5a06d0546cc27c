"""`python -m pipeline_steps.local demo|run` (see cli.py)."""

import sys

from pipeline_steps.local.cli import main

sys.exit(main())
