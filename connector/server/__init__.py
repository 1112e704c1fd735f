"""What gunicorn's own settings and hooks cannot do: a worker that reads each request whole
(h11) before a thread takes it, accepts fairly on the shared socket, and answers the excess over
VONAGE_MAX_RPS from its loop with the route's own decision (docs/server.md)."""
