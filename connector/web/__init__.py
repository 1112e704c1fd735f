"""HTTP: the Flask blueprints and what runs around them. A route parses, asks relay/ to decide
and act, and answers; the rules live below, in plain functions."""
