"""``python -m fairwatch.cli``: the same command as ``fairwatch``."""

import sys

from fairwatch.cli.main import main

sys.exit(main())
