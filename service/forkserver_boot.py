"""Imported first by every forkserver: Ctrl-C is its parent's to handle, not a traceback here.

A terminal's Ctrl-C reaches the whole process group, the forkserver too, which may be importing
torch for seconds; its parent stops it (service.childproc.stop_forkserver) or it ends when the
parent's end of its pipe closes.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
