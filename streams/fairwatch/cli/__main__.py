"""``python -m fairwatch.cli``: the same command as ``fairwatch``."""

import sys

from fairwatch.cli.commands import main

sys.exit(main())
