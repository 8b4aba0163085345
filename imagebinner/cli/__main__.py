import sys

from imagebinner.cli import main

sys.exit(main())
