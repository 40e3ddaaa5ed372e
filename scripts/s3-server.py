"""Runs moto's S3 server (an S3-compatible server from PyPI) for kvault's tests and for a
newcomer's local S3: `python s3-server.py PORT`.

Requests are handled one at a time. moto checks a conditional PUT (`If-None-Match: *`) and
then writes, as two steps; under its threaded server two racing creates of one key could both
pass the check. S3 itself decides such races atomically, and kvault's create-only manifest and
lease rely on that, so this launcher serializes requests to give the same guarantee.
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    os.environ.setdefault("MOTO_PORT", str(port))
    moto_app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def app(environ, start_response):
        with one_at_a_time:
            # The whole response is produced under the lock.
            return [b"".join(moto_app(environ, start_response))]

    run_simple(
        host,
        port,
        app,
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
