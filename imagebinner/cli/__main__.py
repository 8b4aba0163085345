"""``python -m imagebinner.cli``: the same as the ``imagebinner`` command."""

import sys

from imagebinner.cli import main

sys.exit(main())
