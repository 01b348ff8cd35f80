"""`meshctl dashboard`: the mesh as a local web page. May import runtime's queries and below.

    auth.py     who may ask: the token (URL → HttpOnly cookie, a header for changes), Host, Origin
    views.py    the page's JSON from ps, stat, tap, trace and fault's data (pure), the chart ring
    board.py    the live state: a poller, a tap per service, the pages' bounded queues
    server.py   the HTTP server (standard library) on 127.0.0.1, routes, server-sent events
    page.html   the page itself: no build step, no third-party code"""

from .board import Board
from .server import DashboardServer

__all__ = ["Board", "DashboardServer"]
