"""The ceiling: a WSGI app that only waits the Vonage latency, served by the connector's own
gunicorn config. What it reaches is what workers x threads allow; the connector's throughput
is reported as a share of it.

    BENCH_CEILING_LATENCY=0.2 gunicorn --config gunicorn.conf.py bench.ceiling:app
"""

import os
import time

LATENCY = float(os.environ.get("BENCH_CEILING_LATENCY", "0.2"))
BODY = b'{"trackingId": "00000000-0000-0000-0000-000000000000", "status": "sent"}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    time.sleep(LATENCY)
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
