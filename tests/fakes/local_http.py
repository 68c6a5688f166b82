"""Running a test HTTP server on 127.0.0.1 in a background thread (the fakes' shared lifecycle)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], name: str) -> ThreadingHTTPServer:
    """Start serving ``handler`` on a free port of 127.0.0.1 from a daemon thread called ``name``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    # A short poll interval makes shutdown() quick: it waits for the serving loop to notice.
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
    ).start()
    return httpd


def shut(httpd: ThreadingHTTPServer | None) -> None:
    """Stop a server ``serve`` started (``None``: nothing to stop)."""
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
    """Answer ``handler``'s request with ``payload`` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
