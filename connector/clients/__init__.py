"""Vonage and MoEngage over HTTP, and Vonage's webhook signatures: each call within a deadline,
each failure as data (VonageError, NotAccepted); no Flask, no store."""
