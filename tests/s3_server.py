"""moto's S3 server, with its writes made atomic as S3's are.

Usage: s3_server.py HOST PORT

Delta commits on S3 rest on conditional puts: a writer creates the log's next
version with `If-None-Match: *`, and exactly one of two racing writers may win.
moto 5's server answers requests on many threads and checks the condition before
it writes, without a lock: two racing conditional puts of one key can both
succeed (measured: 2 of 200 three-way races in one run), and the commit written
first is then silently replaced by the other. Real S3 (and MinIO, R2) decide such a race
atomically. So here every request that writes (PUT, POST, DELETE) is handled under
one lock, its body read in full before the lock is taken; reads stay concurrent.
(The race is too rare to catch in a test of reasonable length: docs/tables.md.)
"""

import io
import os
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

WRITES = {"PUT", "POST", "DELETE"}


def atomic_writes(app):
    lock = threading.Lock()

    def serve(environ, start_response):
        if environ.get("REQUEST_METHOD") not in WRITES:
            return app(environ, start_response)
        stream = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):
            body = stream.read()
        else:
            body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        with lock:
            result = app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                if hasattr(result, "close"):
                    result.close()

    return serve


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(host, port, atomic_writes(app), threaded=True)


if __name__ == "__main__":
    main()
