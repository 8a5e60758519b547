"""A worker plugin that holds the forkserver's warm-up open until a test lets it go.

The forkserver imports it last; it writes its pid to $RIDGELINE_TEST_WARMING and then blocks
reading the FIFO $RIDGELINE_TEST_HOLD_WARM_UP, so a test can interrupt a warm-up for certain.
"""

import os
from pathlib import Path

Path(os.environ["RIDGELINE_TEST_WARMING"]).write_text(str(os.getpid()))
with open(os.environ["RIDGELINE_TEST_HOLD_WARM_UP"]) as hold:
    hold.read()
