"""A worker plugin that holds a forkserver's warm-up open until a test lets it go.

Both forkservers import it last; the one named by $RIDGELINE_TEST_HOLD_SERVER ("quick", the one
a worker waits for before it claims jobs, by default; or "full") writes its pid to
$RIDGELINE_TEST_WARMING and then blocks reading the FIFO $RIDGELINE_TEST_HOLD_WARM_UP, so a
test can interrupt a warm-up, or run jobs beside one, for certain.
"""

import os
import sys
from pathlib import Path

quick = "service.worker.preload_quick" in sys.modules
if quick == (os.environ.get("RIDGELINE_TEST_HOLD_SERVER", "quick") == "quick"):
    Path(os.environ["RIDGELINE_TEST_WARMING"]).write_text(str(os.getpid()))
    with open(os.environ["RIDGELINE_TEST_HOLD_WARM_UP"]) as hold:
        hold.read()
