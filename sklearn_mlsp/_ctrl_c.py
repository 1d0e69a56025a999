"""Holding a Ctrl-C over a few statements that must not be cut apart.

A KeyboardInterrupt can be raised between any two statements of the main
thread: between ``os.open`` returning and the code that will close the
descriptor, or inside a callback that prints it as "Exception ignored" and
drops it. :func:`ctrl_c_deferred` holds it until the block ends, then raises it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["ctrl_c_deferred"]


@contextmanager
def ctrl_c_deferred():
    """Hold a Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt.

    Only Python's own handler in the main thread is replaced (it is the only
    thread a Ctrl-C interrupts); a handler of the caller's is left alone.
    Keep the block short: it cannot be interrupted.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    try:  # installed inside the try: whatever is raised next, the handler is put back
        signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
        yield
    finally:
        # Inline, not a helper (a call's start can raise too). signal.signal runs
        # pending handlers before it changes anything: an exception from one (a
        # SIGALRM timeout, say) would leave every later Ctrl-C held and lost.
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        except BaseException:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise
        if caught:  # also over an exception of the block (FileNotFoundError, say): the Ctrl-C comes first
            raise KeyboardInterrupt
