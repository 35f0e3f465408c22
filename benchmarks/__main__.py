"""`python -m benchmarks [--quick] [--json PATH]`: the speed benchmarks (benchmarks/speed.py)."""

import sys

from benchmarks.speed import main

sys.exit(main())
