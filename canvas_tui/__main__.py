import sys

from canvas_tui.cli import main

sys.exit(main())
