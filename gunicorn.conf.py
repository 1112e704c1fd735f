"""gunicorn settings: threaded workers, so a send waiting on Vonage holds a thread, not a process.

Each can be overridden by environment or `.env`: PORT, WEB_CONCURRENCY (workers), GUNICORN_THREADS,
GUNICORN_REUSE_PORT, GUNICORN_TIMEOUT, GUNICORN_GRACEFUL_TIMEOUT, GUNICORN_KEEPALIVE.
"""

import os

from dotenv import load_dotenv

# `.env` is read as the app reads it (connector/config.py: python-dotenv, the environment
# winning over the file), so PORT, WEB_CONCURRENCY and GUNICORN_THREADS there mean the same
# to gunicorn as to the app.
load_dotenv()

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
# Measured with `python -m bench` on 2 cores (bench/RESULTS.md). A kept-alive connection stays
# with the worker that accepted it, and one worker often takes most of a burst of new ones:
# 64 threads let a worker serve all it is given; 4 workers spread the CPU past the GIL.
# 4 x 64 = 256 requests in flight; a worker peaked at 69 MB under the benchmark.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
# Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads new connections
# evenly: on one shared socket, whichever worker wakes first took them (measured [2, 48, 78]
# of 128 kept-alive connections over 4 workers, and sends/s varied 536-620 from run to run).
# The price: connections queued on a worker stopping in a HUP reload are reset, not served by
# the new workers. GUNICORN_REUSE_PORT=0 shares one socket instead.
reuse_port = os.environ.get("GUNICORN_REUSE_PORT", "1") != "0"
# A send answers within VONAGE_TIMEOUT (4 s) and a webhook within ~15 s: 30 s only catches a
# truly stuck worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
accesslog = None  # the app logs each event itself, with numbers masked
errorlog = "-"


def post_worker_init(worker):
    """Each worker opens the database and logs what is misconfigured before it serves (the app
    itself opens nothing when built): a bad DATABASE_URL or a schema from a newer connector
    fails the worker's boot, and gunicorn stops, loudly."""
    from connector import start

    start(worker.wsgi)
