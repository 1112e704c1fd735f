"""gunicorn settings: threaded workers, so a send waiting on Vonage holds a thread, not a process.

Each can be overridden by environment or `.env`: PORT, WEB_CONCURRENCY (workers), GUNICORN_THREADS,
GUNICORN_REUSE_PORT, GUNICORN_TIMEOUT, GUNICORN_GRACEFUL_TIMEOUT, GUNICORN_KEEPALIVE.
"""

import os

from dotenv import find_dotenv, load_dotenv

# `.env` is read as the app reads it (connector/settings.py: python-dotenv, the environment
# winning over the file), so PORT, WEB_CONCURRENCY and GUNICORN_THREADS there mean the same
# to gunicorn as to the app.
load_dotenv(find_dotenv(usecwd=True))
# Every value below is read through the declarations in connector/settings.py: a bad one (here
# or for the app) stops the start in the master, with the variable and what it allows.
from connector.settings import load_or_exit

settings = load_or_exit(os.environ)

bind = f"0.0.0.0:{settings.port}"
# A worker on gunicorn's documented interface: each request is read whole (h11) by its event
# loop before a thread takes it, and its refusals are JSON: connector/server/worker.py.
worker_class = "connector.server.worker.Worker"
# Chosen with `python -m bench` (bench/RESULTS.md has the figures). A kept-alive connection
# stays with the worker that accepted it, and one worker often takes most of a burst of new
# ones: 64 threads let a worker serve all it is given; 4 workers spread the CPU past the GIL.
workers = settings.workers
threads = settings.threads
# One listening socket, made by the master and shared by the workers (GUNICORN_REUSE_PORT=0):
# a `kill -HUP` reload resets nothing, as the new workers take over what is queued on it. With
# SO_REUSEPORT (1) each worker had its own socket, and connections queued on a stopping
# worker's were reset (31-39 per reload under load); another copy of the connector could also
# bind the same port and silently take half the traffic. On the shared socket the worker
# accepts fairly (connector/server/worker.py): 128 connections opened at once spread [30, 32, 33, 33]
# over 4 workers, where the first worker to wake used to take most. bench/RESULTS.md has it all.
reuse_port = settings.gunicorn_reuse_port
# A port held by another program stops the start at once, with a message naming it.
from connector.server.port import check_port

on_starting = check_port

# A send answers within VONAGE_TIMEOUT (4 s) and a webhook within ~15 s: 30 s only catches a
# truly stuck worker.
timeout = settings.gunicorn_timeout
graceful_timeout = settings.gunicorn_graceful_timeout
keepalive = settings.gunicorn_keepalive
accesslog = None  # the app logs each event itself, with numbers masked
errorlog = "-"


def post_worker_init(worker):
    """Each worker opens the database and logs what is misconfigured before it serves (the app
    itself opens nothing when built): a bad DATABASE_URL or a schema from a newer connector
    fails the worker's boot, and gunicorn stops, loudly."""
    from connector import start
    from connector.server import early

    if "connector" in getattr(worker.wsgi, "extensions", {}):  # not the benchmark's ceiling app
        start(worker.wsgi)
        # With VONAGE_MAX_RPS, a send over it is refused in the worker's event loop.
        worker.answer_early = early.answerer(worker.wsgi)


def worker_exit(server, worker):
    """The log line and trail rows of the last early 429s, if not yet written."""
    if getattr(worker, "answer_early", None) is not None:
        worker.answer_early.tick(force=True)
    ctx = getattr(worker.wsgi, "extensions", {}).get("connector")
    if ctx is not None and ctx.store_opened:
        try:
            ctx.store.flush_journal(force=True)
        except Exception:  # leaving anyway; the rows are diagnosis only
            worker.log.exception("could not write the last refused sends' trail rows")
