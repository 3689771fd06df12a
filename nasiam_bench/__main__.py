import sys

from nasiam_bench.cli import main

sys.exit(main())
