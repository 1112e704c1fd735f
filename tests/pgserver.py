"""A private PostgreSQL server a test may stop and start again, unlike the shared one.

Uses the newest /usr/lib/postgresql/*/bin; as root, the cluster runs as `nobody` (postgres
refuses root), as in .ci/run. Without the binaries the test skips, saying so.
"""

import glob
import os
import shutil
import subprocess
import tempfile

import pytest
from gunicorn_proc import free_port


def binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    return found[-1] if found else None


class PrivatePostgres:
    def __init__(self):
        self.bin = binaries()
        if not self.bin:
            pytest.skip(
                "needs PostgreSQL's server binaries (/usr/lib/postgresql/*/bin, Debian's "
                "`postgresql` package) to run a server it can stop"
            )
        self.dir = tempfile.mkdtemp(prefix="connector-pg-")
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
            self.as_user = ["runuser", "-u", "nobody", "--"]
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", f"{self.dir}/data", "-U", "postgres", "--auth=trust", "--no-sync")

    def _run(self, tool, *args):
        subprocess.run(
            [*self.as_user, f"{self.bin}/{tool}", *args],
            cwd="/",
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            f"{self.dir}/data",
            "-l",
            f"{self.dir}/log",
            "-w",
            "-o",
            options,
            "start",
        )
        return self

    def stop(self):
        """As a crash or a failover does: every session is cut at once."""
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "stop")

    def remove(self):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
