"""Foreground supervision of a running stack. May import runtime's stack and what lies below it.

    tracker.py   the containers' logs and exits (Tracker, the executor's Watch); `meshctl logs -f`
    reloader.py  hot reload on file changes (Reloader) and certificate renewal (RenewalTimer)
    loop.py      signals (Interrupts), sidecar restarts and pod rebuilds, and the loop, supervise()

The executor's waits and builds see the stop Event and raise Cancelled; the loop sees it and tears down."""

from .loop import Interrupts, RestartPolicy, SidecarRestarter, supervise, teardown
from .reloader import Reloader, RenewalTimer
from .tracker import LOG_TAIL, Tracked, Tracker, follow_logs

__all__ = ["LOG_TAIL", "Interrupts", "Reloader", "RenewalTimer", "RestartPolicy", "SidecarRestarter", "Tracked",
           "Tracker", "follow_logs", "supervise", "teardown"]
