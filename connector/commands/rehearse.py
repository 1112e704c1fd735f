"""`flask rehearse`: the connector walked through on loopback (connector/rehearsal/)."""

import os

import click

from connector.rehearsal import walk as rehearsal


def rehearse_command(make_app):
    """`flask rehearse`, walking through an app that `make_app(settings)` builds and starts."""

    @click.command("rehearse")
    def rehearse():
        """Try the connector with no account: a send, its delivery reports, STOP and START,
        against Vonage and MoEngage stand-ins on this machine. Exit 1 if a step misbehaves."""
        # Everything is on loopback: a proxy set for the internet must not be asked for it.
        for name in ("NO_PROXY", "no_proxy"):
            os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1"]))
        if not rehearsal.run(make_app):
            raise SystemExit(1)

    return rehearse
