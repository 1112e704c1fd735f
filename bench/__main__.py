"""The load benchmark: `python -m bench` from the repository root (`--help` for the options).

Starts the Vonage and MoEngage stand-ins (bench/standins.py), then gunicorn with the production
config (gunicorn.conf.py, whatever WEB_CONCURRENCY and GUNICORN_THREADS say) twice: once
serving bench/ceiling.py, an endpoint that only waits the Vonage latency, and once serving the
connector. The load generator (bench/loadgen.py) runs in its own process for each row. Prints
a Markdown table and the targets of issue 12, and writes both to bench/out/results.md.
Traffic goes to 127.0.0.1 only; every process it starts is stopped before it exits.

The connector forwards statuses only of messages it sent: before a row with status webhooks,
the sends of the messages they name are recorded in the connector's database
(`record_messages`; a checkout without `Store.record_sent` forwarded any status, and gets
none). With VONAGE_MAX_RPS set only a key and secret Vonage accepted takes a rate slot (a new
pair's first send is its own check), so the rate-limited connector gets one genuine send
(`prime`) before its rows.
"""

import argparse
import contextlib
import json
import os
import platform
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import retention
from bench.loadgen import message_uuid

try:
    from connector.settings import load_settings
except ImportError:  # the flat layout before 2.0.0: the "before" half of a before/after run
    from connector.config import load_settings
from connector.store import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
API_KEY, API_SECRET = "benchkey", "bench-secret"
SIGNATURE_SECRET = "bench-signature-secret-0123456789abcdef"
TICKS = os.sysconf("SC_CLK_TCK")
PARTS = ["ceiling", "sends", "webhooks", "mix", "limit", "overload", "instances", "retention"]
VONAGE_TIMEOUT = 4.0  # the connector's default, set explicitly below


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", data=None, headers=None, timeout=5):
    request = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


class StandIns:
    def __init__(self, vonage_latency, moengage_latency):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.standins",
                "--vonage-latency",
                str(vonage_latency),
                "--moengage-latency",
                str(moengage_latency),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        _, vonage, moengage = self.proc.stdout.readline().split()
        self.vonage, self.moengage = (f"http://127.0.0.1:{p}" for p in (vonage, moengage))
        # Real Vonage runs on its own machines: its clock stamps a request when it arrives,
        # whatever our CPU does. The stand-in shares our 2 cores, and starved by a saturated
        # connector it stamped requests in bursts (31 "in one second" that left 36 ms apart).
        # A higher priority keeps its stamps, and its latency, close to arrival (if allowed).
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, -10)

    def reset(self):
        for url in (self.vonage, self.moengage):
            http(f"{url}/_reset", "POST", b"")

    def stats(self, url):
        return json.loads(http(f"{url}/_stats", timeout=30)[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Gunicorn:
    """gunicorn with the production config, in its own process group."""

    def __init__(self, app, env, log_path, workers=None):
        workers = workers or CONFIG["workers"]
        self.env = env  # the database it uses, for record_messages and retention.Aging
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app],
            cwd=ROOT,
            env={**os.environ, **env, "PORT": str(self.port)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http(f"{self.url}/health", timeout=1)
                if len(self.workers()) >= workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {log_path}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def workers(self):
        return children(self.proc.pid)

    def cpu_seconds(self):
        return sum(cpu_seconds(p) for p in [self.proc.pid, *self.workers()])

    def reset_peak_rss(self):
        for pid in self.workers():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
            except OSError:
                pass

    def peak_rss_mb(self):
        """The largest peak RSS of one worker since the last reset, in MB."""
        peaks = [0]
        for pid in self.workers():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def log_size(self):
        return self.log_path.stat().st_size

    def log_since(self, offset):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self):
        stop_server(self.proc, self.log)


def stop_server(proc, log):
    """Stop a gunicorn started in its own process group (TERM, then KILL after 35 s)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.close()


def loadgen_spec(port, warmup, duration, **spec):
    """What bench.loadgen reads on stdin for one connector at `port`."""
    return {
        "port": port,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "signature_secret": SIGNATURE_SECRET,
        "application_id": "bench-app",
        "warmup": warmup,
        "duration": duration,
        **spec,
    }


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))]


def run_loadgen(spec):
    """bench.loadgen, in its own process, given `spec` (see loadgen_spec): its JSON result."""
    loadgen = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        cwd=ROOT,
        check=True,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
    )
    return json.loads(loadgen.stdout)


def open_database(env):
    """The store of the database a connector started with `env` uses, opened as the tests'
    conftest does (the bench's own connection; its writes queue with the workers')."""
    database = {"database_path": env["DATABASE_PATH"], "database_url": env.get("DATABASE_URL", "")}
    return open_store(load_settings(database, environ={}))


def messages_needed(spec):
    """How many messages a row's status webhooks can walk (two new statuses each), at most:
    a new status is answered once MoEngage has it, so a closed-loop user posts at most one
    per MoEngage latency; an open loop, its rate's share of statuses. With a margin."""
    weights = spec.get("weights", {})
    share = weights.get("status", 0) / max(1, sum(weights.values()))
    seconds = spec["warmup"] + spec["duration"]
    if spec["mode"] == "open":
        statuses = spec["rate"] * share * seconds
    else:
        statuses = spec["concurrency"] * seconds / max(ARGS.moengage_latency, 0.01)
    return int(statuses / 2 * 1.2) + 100


def record_messages(env, spec, stamp=None):
    """Record, in the database of the connector started with `env`, the sends of the messages
    the row's status webhooks name, as the connector records a send Vonage accepted (at
    `stamp`, default now); returns the spec naming them. None are recorded on a checkout
    without `Store.record_sent` (it forwarded every status): the row's messages are named all
    the same, so exactly_once tells them from an earlier row's."""
    if not spec.get("weights", {}).get("status"):
        return spec
    prefix = uuid.uuid4().hex[:8]
    if not hasattr(Store, "record_sent"):
        return {**spec, "messages": {"prefix": prefix, "count": None}}
    count = messages_needed(spec)
    stamp = time.time() if stamp is None else stamp
    store = open_database(env)
    try:
        for n in range(count):
            store.record_sent(message_uuid(prefix, n), "447700900000", None, None, stamp)
    finally:
        store.close()
    return {**spec, "messages": {"prefix": prefix, "count": count}}


def prime(server):
    """One genuine send, so Vonage has accepted the bench's key and secret before a row: with
    VONAGE_MAX_RPS set, a pair's first send is its own check and takes no rate slot (the
    connector then knows the pair for a day, in every worker through the database)."""
    body = json.dumps({"to": "447999999999", "text": "Bench: key check", "campaign_id": "prime"})
    status, answer = http(
        f"{server.url}/",
        "POST",
        body.encode(),
        {"Content-Type": "application/json", "Authorization": f"Custom {API_KEY}:{API_SECRET}"},
        timeout=VONAGE_TIMEOUT + 5,
    )
    if status != 200:
        raise RuntimeError(f"the priming send was answered {status}: {answer[:200]!r}")


def run_load(server, standins, spec, stamp=None):
    """One row: the load generator against `server`, with what everyone used meanwhile. The
    sends its status webhooks refer to are recorded first (at `stamp`: record_messages)."""
    # A part may set its own warm-up and duration (retention's turns do).
    spec = loadgen_spec(server.port, **{"warmup": ARGS.warmup, "duration": ARGS.duration, **spec})
    spec = record_messages(server.env, spec, stamp)
    standins.reset()
    server.reset_peak_rss()
    log_offset = server.log_size()
    cpu_before = server.cpu_seconds(), cpu_seconds(standins.proc.pid)
    result = run_loadgen(spec)
    wall = result["wall_seconds"]
    result["connector_cpu_seconds"] = server.cpu_seconds() - cpu_before[0]
    result["connector_cpu"] = result["connector_cpu_seconds"] / wall
    result["standins_cpu"] = (cpu_seconds(standins.proc.pid) - cpu_before[1]) / wall
    result["loadgen_cpu"] = result["cpu_seconds"] / wall
    result["peak_rss_mb"] = server.peak_rss_mb()
    result["locked"] = server.log_since(log_offset).count("database is locked")
    result["vonage"] = standins.stats(standins.vonage)
    result["moengage"] = standins.stats(standins.moengage)
    result["messages"] = spec.get("messages")
    return result


def row(name, load, result, kinds, expected_ok=(200,), note=""):
    """A table row for the requests of `kinds` in `result`."""
    latencies = [x for k in kinds for x in result["latencies"].get(k, [])]
    overheads = [x - LATENCY_MS[k] for k in kinds for x in result["latencies"].get(k, [])]
    codes = {}
    for k in kinds:
        for code, n in result["codes"].get(k, {}).items():
            codes[code] = codes.get(code, 0) + n
    errors = sum(n for code, n in codes.items() if code not in {str(c) for c in expected_ok})
    return {
        # the connector's CPU per answer, warm-up included on both sides
        "cpu_ms": result["connector_cpu_seconds"] * 1000 / max(1, sum(codes.values())),
        "name": name,
        "load": load,
        "rps": len(latencies) / result["duration"],
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "o50": percentile(overheads, 50),
        "o99": percentile(overheads, 99),
        "errors": errors,
        "codes": codes,
        "rss": result["peak_rss_mb"],
        "loadgen": result["loadgen_cpu"],
        "connector": result["connector_cpu"],
        "standins": result["standins_cpu"],
        "locked": result["locked"],
        "note": note,
    }


HEADER = (
    "| run | load | 200s/s | p50 ms | p95 ms | p99 ms | overhead p50 / p99 ms | errors "
    "| peak RSS/worker MB | CPU % connector / stand-ins / load gen | CPU ms/request | notes |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
)


def markdown(r):
    cpu = f"{r['connector'] * 100:.0f} / {r['standins'] * 100:.0f} / {r['loadgen'] * 100:.0f}"
    errors = str(r["errors"]) + (f" ({r['codes']})" if r["errors"] else "")
    return (
        f"| {r['name']} | {r['load']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p95']:.1f} "
        f"| {r['p99']:.1f} | {r['o50']:.1f} / {r['o99']:.1f} | {errors} | {r['rss']:.0f} "
        f"| {cpu} | {r['cpu_ms']:.2f} | {r['note']} |"
    )


def exactly_once(result):
    """Compare what the MoEngage stand-in received with the events answered 200: each of those
    once, nothing twice. An event answered 503 (the connector shed it: too many calls already
    wait on MoEngage) stays pending and its sweep may forward it later, once: counted as
    `later`, or as `earlier rows'` when it comes during the next row."""
    posts = result["moengage"]["posts"]
    expected = set(result["forwarded"])
    attempted = set(result.get("attempted", expected))
    prefix = (result.get("messages") or {}).get("prefix")
    missing = sum(1 for key in expected if key not in posts)
    twice = sum(1 for n in posts.values() if n > 1)
    later = sum(1 for key in posts if key in attempted and key not in expected)
    strays = [key for key in posts if key not in attempted]
    earlier = sum(1 for key in strays if prefix and not key.startswith(prefix))
    unexpected = len(strays) - earlier
    unknown = result.get("unknown_messages", 0)  # past the messages recorded before the row
    ok = missing == twice == unexpected == unknown == 0 and bool(expected)
    sent = sum(result["codes"].get("status", {}).values())
    return ok, (
        f"{len(expected)} events (+{sent - len(expected)} redeliveries) -> "
        f"MoEngage got {sum(posts.values())}: missing {missing}, twice {twice}, "
        f"unexpected {unexpected}"
        + (f", {later} answered 503 then forwarded" if later else "")
        + (f", {earlier} of earlier rows" if earlier else "")
        + (f"; {unknown} messages not recorded" if unknown else "")
    )


def show(line):
    print(line, flush=True)
    REPORT.append(line)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for path in OUT.glob("*"):
        if path.suffix in (".log", ".db", ".db-wal", ".db-shm", ".db-lock"):
            path.unlink()
    standins = StandIns(ARGS.vonage_latency, ARGS.moengage_latency)
    rows = []
    try:
        header()
        show(HEADER)
        ceilings = {}
        if "ceiling" in ARGS.only:
            with Gunicorn(
                "bench.ceiling:app",
                {"BENCH_CEILING_LATENCY": str(ARGS.vonage_latency)},
                OUT / "ceiling.log",
            ) as ceiling:
                for c in ARGS.concurrency:
                    rows.append(
                        show_row(
                            row(
                                "ceiling",
                                f"{c} users",
                                run_load(
                                    ceiling,
                                    standins,
                                    {"mode": "closed", "concurrency": c, "weights": {"send": 1}},
                                ),
                                ["send"],
                            )
                        )
                    )
                    ceilings[c] = rows[-1]["rps"]
        env = {
            "DATABASE_PATH": str(OUT / "bench.db"),
            "VONAGE_API_URL": standins.vonage,
            "MOENGAGE_DELIVERY_URL": f"{standins.moengage}/sms/dlr/custom/bench?region=eu",
            "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
            "VONAGE_FROM": "Bench",
            "VONAGE_MAX_RPS": "0",
            "VONAGE_TIMEOUT": str(VONAGE_TIMEOUT),
            "DATABASE_URL": ARGS.database_url,
        }
        if {"sends", "webhooks", "mix"} & set(ARGS.only):
            with Gunicorn("app:app", env, OUT / "connector.log") as connector:
                if "sends" in ARGS.only:
                    rows += sends(connector, standins, ceilings)
                rows += webhooks(connector, standins)
        if {"limit", "overload"} & set(ARGS.only):
            env = {
                **env,
                "DATABASE_PATH": str(OUT / "bench-rps.db"),
                "VONAGE_MAX_RPS": str(ARGS.max_rps),
            }
            with Gunicorn("app:app", env, OUT / "connector-rps.log") as limited:
                prime(limited)
                if "limit" in ARGS.only:
                    rows.append(rate_limited(limited, standins))
                if "overload" in ARGS.only:
                    rows += overload(limited, standins)
        if "instances" in ARGS.only:
            rows += two_instances(env, standins)
        if "retention" in ARGS.only:
            # Pruning is measured apart from the rate limit the limit and overload parts set.
            retention_env = {**env, "VONAGE_MAX_RPS": "0"}
            rows += retention.part(sys.modules[__name__], standins, retention_env, OUT, ARGS)
    finally:
        standins.stop()
    targets(rows)
    (OUT / "results.md").write_text("\n".join(REPORT) + "\n")
    print(f"\nwritten to {OUT / 'results.md'}; connector logs in {OUT}")


def show_row(r):
    show(markdown(r))
    return r


def sends(connector, standins, ceilings):
    rows = []
    for c in ARGS.concurrency:
        r = row(
            "sends",
            f"{c} users",
            run_load(
                connector, standins, {"mode": "closed", "concurrency": c, "weights": {"send": 1}}
            ),
            ["send"],
        )
        if c in ceilings:
            r["ratio"] = r["rps"] / ceilings[c]
            r["note"] = f"{r['ratio']:.2f} of ceiling"
        rows.append(show_row(r))
    r = row(
        "sends",
        f"{ARGS.rate}/s open",
        run_load(connector, standins, {"mode": "open", "rate": ARGS.rate, "weights": {"send": 1}}),
        ["send"],
        note="fixed arrival rate",
    )
    r["open"] = True
    rows.append(show_row(r))
    return rows


def webhooks(connector, standins):
    """Status webhooks alone, then mixed with sends; each checked for exactly-once."""
    parts = [
        (name, weights, kinds)
        for part, name, weights, kinds in (
            ("webhooks", "status webhooks", {"status": 1}, ["status"]),
            ("mix", "mix 1 send : 2 webhooks", {"send": 1, "status": 2}, ["send", "status"]),
        )
        if part in ARGS.only
    ]
    if (
        parts
        and http(
            f"{connector.url}/webhooks/status", "POST", b"{}", {"Content-Type": "application/json"}
        )[0]
        == 404
    ):
        show(
            "| status webhooks | | | | | | | | | | | not run: this checkout has no /webhooks/status |"
        )
        return []
    rows = []
    for name, weights, kinds in parts:
        for c in ARGS.concurrency:
            result = run_load(
                connector,
                standins,
                {
                    "mode": "closed",
                    "concurrency": c,
                    "weights": weights,
                    "duplicates": ARGS.duplicates,
                },
            )
            ok, note = exactly_once(result)
            r = row(name, f"{c} users", result, kinds, note=note)
            r["exactly_once"] = ok
            r["forwarded_rps"] = result["forwarded_in_window"] / ARGS.duration
            r["note"] = f"{r['forwarded_rps']:.0f} events/s forwarded; " + r["note"]
            rows.append(show_row(r))
    return rows


def rate_limited(limited, standins):
    """A campaign faster than VONAGE_MAX_RPS: smoothed to it, the excess 429 + Retry-After."""
    result = run_load(
        limited, standins, {"mode": "open", "rate": ARGS.limited_rate, "weights": {"send": 1}}
    )
    most = result["vonage"]["most_in_any_second"]
    refused = result["latencies"].get("send 429", [])
    r = row(
        f"sends, VONAGE_MAX_RPS={ARGS.max_rps:g}",
        f"{ARGS.limited_rate}/s open",
        result,
        ["send"],
        expected_ok=(200, 429),
        note=f"Vonage saw at most {most} in any 1 s; answers {dict(result['codes']['send'])}"
        f"; the 429s took p50 {percentile(refused, 50):.0f} ms, "
        f"p99 {percentile(refused, 99):.0f} ms",
    )
    r["most"] = most
    return show_row(r)


def two_instances(env, standins):
    """Two instances (two gunicorn masters with their own temp directories, as two dynos) on
    one PostgreSQL database, each as the deploy files run it: sends at full speed, then a
    campaign at twice VONAGE_MAX_RPS split over both. Connections are counted in
    pg_stat_activity by the application_name the rows' connectors use."""
    if not ARGS.database_url:
        show("| 2 instances | | | | | | | | | | not run: needs --database-url |")
        return []
    import psycopg  # only this part needs it

    name = f"bench-{os.getpid()}"
    sep = "&" if "?" in ARGS.database_url else "?"
    base = {
        **env,
        "DATABASE_URL": f"{ARGS.database_url}{sep}application_name={name}",
        "WEB_CONCURRENCY": str(ARGS.instance_workers),
        "GUNICORN_THREADS": str(ARGS.instance_threads),
        "DATABASE_POOL_SIZE": str(ARGS.pool_size),
    }
    budget = 2 * ARGS.instance_workers * ARGS.pool_size
    shape = f"2 x {ARGS.instance_workers} workers x {ARGS.instance_threads} threads"
    rows = []
    for max_rps, spec in (
        (0, {"mode": "closed", "concurrency": ARGS.instance_users, "weights": {"send": 1}}),
        (
            ARGS.max_rps,
            {"mode": "open", "rate": ARGS.limited_rate / 2, "weights": {"send": 1}},
        ),
    ):
        servers = []
        try:
            for i in (1, 2):
                tmp = OUT / f"tmp-instance-{i}"
                tmp.mkdir(exist_ok=True)
                servers.append(
                    Gunicorn(
                        "app:app",
                        {**base, "VONAGE_MAX_RPS": str(max_rps), "TMPDIR": str(tmp)},
                        OUT / f"instance-{i}.log",
                        workers=ARGS.instance_workers,
                    )
                )
            if max_rps:
                for server in servers:
                    prime(server)
            with psycopg.connect(ARGS.database_url, autocommit=True) as conn:
                result = run_pair(servers, standins, spec, conn, name)
        finally:
            for server in servers:
                server.stop()
        most = result["vonage"]["most_in_any_second"]
        if max_rps:
            load = f"{ARGS.limited_rate}/s open, half to each"
            title = f"2 instances, VONAGE_MAX_RPS={max_rps:g}"
            expected = (200, 429)
        else:
            load = f"2 x {ARGS.instance_users} users"
            title = "2 instances"
            expected = (200,)
        r = row(
            title,
            load,
            result,
            ["send"],
            expected_ok=expected,
            note=f"{shape}, DATABASE_POOL_SIZE={ARGS.pool_size}; Vonage saw at most {most} in "
            f"any 1 s; connections used at most {result['connections']} (budget {budget}); "
            f"answers {dict(result['codes']['send'])}",
        )
        r["connections"], r["budget"] = result["connections"], budget
        if max_rps:
            r["most"] = most
        rows.append(show_row(r))
    return rows


def overload(limited, standins):
    """A campaign far over VONAGE_MAX_RPS (closed loop, then open loop at MoEngage's default
    throttle): every answer quick, a 200 or a 429 with Retry-After, Vonage never over the limit."""
    rows = []
    for load, spec in (
        (f"{ARGS.overload_users} users", {"mode": "closed", "concurrency": ARGS.overload_users}),
        (f"{ARGS.overload_rate}/s open", {"mode": "open", "rate": ARGS.overload_rate}),
    ):
        result = run_load(limited, standins, {**spec, "weights": {"send": 1}})
        r = row(f"overload, VONAGE_MAX_RPS={ARGS.max_rps:g}", load, result, ["send"], (200, 429))
        answers = result["latencies"].get("send", []) + result["latencies"].get("send 429", [])
        r.update(
            overload=True,
            offered=spec.get("rate"),
            most=result["vonage"]["most_in_any_second"],
            answers_rps=len(answers) / result["duration"],
            a90=percentile(answers, 90),
            amax=max(answers, default=float("nan")),
            slow=sum(1 for x in answers if x > (VONAGE_TIMEOUT + 0.5) * 1000),
        )
        r["note"] = (
            f"{r['answers_rps']:.0f} answers/s ({dict(result['codes']['send'])}); all answers "
            f"p50 {percentile(answers, 50):.0f} / p90 {r['a90']:.0f} / max {r['amax']:.0f} ms, "
            f"{r['slow']} over {VONAGE_TIMEOUT + 0.5:g} s; Vonage saw at most {r['most']} in any 1 s"
        )
        rows.append(show_row(r))
    return rows


def run_pair(servers, standins, spec, conn, name):
    """One load generator per instance at once, their results merged; the most connections
    `name` held in PostgreSQL meanwhile, sampled every 50 ms."""
    standins.reset()
    for server in servers:
        server.reset_peak_rss()
    cpu_before = sum(s.cpu_seconds() for s in servers), cpu_seconds(standins.proc.pid)
    specs = [loadgen_spec(server.port, ARGS.warmup, ARGS.duration, **spec) for server in servers]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in specs
    ]
    for proc, one in zip(procs, specs, strict=True):
        proc.stdin.write(json.dumps(one))
        proc.stdin.close()
    most = 0
    while any(p.poll() is None for p in procs):
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()[0]
        most = max(most, count)
        time.sleep(0.05)
    parts = [json.loads(p.stdout.read()) for p in procs]
    result = {"latencies": {}, "codes": {}, "duration": ARGS.duration}
    for part in parts:
        for kind, values in part["latencies"].items():
            result["latencies"].setdefault(kind, []).extend(values)
        for kind, codes in part["codes"].items():
            merged = result["codes"].setdefault(kind, {})
            for code, n in codes.items():
                merged[code] = merged.get(code, 0) + n
    wall = max(p["wall_seconds"] for p in parts)
    result["connector_cpu"] = (sum(s.cpu_seconds() for s in servers) - cpu_before[0]) / wall
    result["standins_cpu"] = (cpu_seconds(standins.proc.pid) - cpu_before[1]) / wall
    result["loadgen_cpu"] = sum(p["cpu_seconds"] for p in parts) / wall
    result["peak_rss_mb"] = max(s.peak_rss_mb() for s in servers)
    result["locked"] = 0
    result["vonage"] = standins.stats(standins.vonage)
    result["connections"] = most
    return result


def header():
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    show(f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    show(
        f"- command: `{' '.join(shlex.quote(a) for a in ['python', '-m', 'bench', *sys.argv[1:]])}`"
    )
    show(
        f"- machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    show(
        f"- gunicorn: {CONFIG['workers']} workers x {CONFIG['threads']} threads "
        f"({CONFIG['worker_class']}); Vonage stand-in {ARGS.vonage_latency * 1000:g} ms, "
        f"MoEngage stand-in {ARGS.moengage_latency * 1000:g} ms; {ARGS.duration:g} s measured "
        f"per row after {ARGS.warmup:g} s warm-up"
    )
    show("")


def targets(rows):
    """Issue 12's targets, each met or missed, for the parts that ran."""
    lines = []
    sends = [r for r in rows if "ratio" in r]
    if sends:
        top = max(sends, key=lambda r: int(r["load"].split()[0]))
        lines.append(
            (
                f"sends at {top['load']}: >= 0.8 of the ceiling, 0 errors",
                top["ratio"] >= 0.8 and top["errors"] == 0,
                (
                    f"{top['rps']:.0f}/s, {top['ratio']:.2f} of ceiling, {top['errors']} errors, "
                    f"{top['cpu_ms']:.2f} ms CPU per send"
                ),
            )
        )
    for r in rows:
        if r.get("open") and r["name"] == "sends":
            lines.append(
                (
                    f"p99 overhead <= 10 ms at {ARGS.rate} sends/s",
                    r["o99"] <= 10,
                    f"{r['o99']:.1f} ms",
                )
            )
    for r in rows:
        if r.get("overload"):
            fast = r["answers_rps"] >= (0.95 * r["offered"] if r["offered"] else 1000)
            limit = VONAGE_TIMEOUT + 0.5
            lines.append(
                (
                    f"overload at {r['load']}: "
                    + (f"~{r['offered']}/s answered" if r["offered"] else ">= 1,000 answers/s")
                    + f", 90 % within 100 ms, none over {limit:g} s, only 200 or 429 with "
                    f"Retry-After, Vonage <= {ARGS.max_rps:g} in any second",
                    fast
                    and r["a90"] <= 100
                    and r["slow"] == 0
                    and r["errors"] == 0
                    and r["most"] <= ARGS.max_rps,
                    (
                        f"{r['answers_rps']:.0f} answers/s, p90 {r['a90']:.0f} ms, max {r['amax']:.0f} ms, "
                        f"{r['errors']} errors, Vonage at most {r['most']}/s"
                    ),
                )
            )
    hooks = [r for r in rows if "exactly_once" in r]
    if hooks:
        alone = [r for r in hooks if r["name"] == "status webhooks"] or hooks
        top = max(alone, key=lambda r: int(r["load"].split()[0]))
        once = all(r["exactly_once"] for r in hooks)
        lines.append(
            (
                f"status webhooks at {top['load']} >= 1,000/s, each forwarded exactly once",
                top["rps"] >= 1000 and top["errors"] == 0 and once,
                (
                    f"{top['rps']:.0f} webhooks/s ({top['forwarded_rps']:.0f} new events/s "
                    f"forwarded), {top['cpu_ms']:.2f} ms CPU each; exactly once in every run: "
                    f"{'yes' if once else 'NO'}"
                ),
            )
        )
    for r in rows:
        if "most" in r and not r.get("overload"):
            lines.append(
                (
                    (
                        f"VONAGE_MAX_RPS={ARGS.max_rps:g} at {r['load']}: Vonage never sees more in "
                        "any second; the excess answered 429"
                    ),
                    r["most"] <= ARGS.max_rps and r["errors"] == 0,
                    f"at most {r['most']} in any 1 s window",
                )
            )
    for r in rows:
        if "connections" in r:
            lines.append(
                (
                    f"{r['name']}: connections within 2 x workers x DATABASE_POOL_SIZE",
                    0 < r["connections"] <= r["budget"],
                    f"at most {r['connections']} of {r['budget']}",
                )
            )
    lines += [
        (
            'no "database is locked"',
            all(r["locked"] == 0 for r in rows),
            f"{sum(r['locked'] for r in rows)} in the connector's logs",
        ),
        (
            "peak RSS <= 80 MB per worker",
            all(r["rss"] <= 80 for r in rows),
            f"largest {max(r['rss'] for r in rows):.0f} MB",
        ),
        (
            "the load generator is not the bottleneck",
            all(r["loadgen"] < 0.5 for r in rows),
            f"its CPU peaked at {max(r['loadgen'] for r in rows) * 100:.0f} % of one core",
        ),
    ]
    lines += retention.targets(rows)
    show("")
    show("| target | met | measured |\n|---|---|---|")
    for name, met, measured in lines:
        show(f"| {name} | {'yes' if met else '**no**'} | {measured} |")


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--vonage-latency",
        type=float,
        default=0.2,
        metavar="S",
        help="seconds the Vonage stand-in takes to answer (default 0.2)",
    )
    parser.add_argument(
        "--moengage-latency",
        type=float,
        default=0.05,
        metavar="S",
        help="seconds the MoEngage stand-in takes to answer (default 0.05)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[16, 64, 128, 256],
        metavar="N",
        help="closed-loop users per row (default 16 64 128 256)",
    )
    parser.add_argument(
        "--rate", type=int, default=100, help="sends/s of the fixed-rate row (default 100)"
    )
    parser.add_argument(
        "--max-rps",
        type=float,
        default=30,
        help="VONAGE_MAX_RPS of the rate-limit row (default 30)",
    )
    parser.add_argument(
        "--limited-rate",
        type=int,
        default=60,
        help="sends/s offered in the rate-limit row (default 60)",
    )
    parser.add_argument(
        "--overload-users",
        type=int,
        default=256,
        metavar="N",
        help="closed-loop users of the overload row, as fast as they can (default 256)",
    )
    parser.add_argument(
        "--overload-rate",
        type=int,
        default=1000,
        metavar="N",
        help="sends/s offered in the open-loop overload row (default 1000, MoEngage's throttle)",
    )
    parser.add_argument(
        "--duplicates",
        type=float,
        default=0.1,
        help="share of status webhooks Vonage delivers twice (default 0.1)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10,
        metavar="S",
        help="seconds measured per row (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2,
        metavar="S",
        help="seconds of load before each row is measured (default 2)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="run these parts only (default: all)",
    )
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=20,
        metavar="S",
        help="retention part: rows older than this are aged a day, for its RETENTION_DAYS=1 "
        "run to prune (default 20; see bench/retention.py)",
    )
    parser.add_argument(
        "--retention-duration",
        type=float,
        default=60,
        metavar="S",
        help="seconds measured per connector of the retention part, over all turns (default 60)",
    )
    parser.add_argument(
        "--retention-rounds",
        type=int,
        default=4,
        metavar="N",
        help="turns each connector of the retention part takes (default 4)",
    )
    parser.add_argument(
        "--retention-rate",
        type=int,
        default=90,
        metavar="N",
        help="requests/s (1 send : 2 webhooks) of the retention part (default 90)",
    )
    parser.add_argument(
        "--database-url",
        default="",
        metavar="URL",
        help="keep the connector's state in this PostgreSQL database instead of "
        "SQLite (its max_connections must exceed workers x threads)",
    )
    parser.add_argument(
        "--instance-workers",
        type=int,
        default=2,
        metavar="N",
        help="instances part: workers per instance (default 2, as app.json and render.yaml)",
    )
    parser.add_argument(
        "--instance-threads",
        type=int,
        default=32,
        metavar="N",
        help="instances part: threads per worker (default 32, as the deploy files)",
    )
    parser.add_argument(
        "--instance-users",
        type=int,
        default=64,
        metavar="N",
        help="instances part: closed-loop users per instance (default 64)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=4,
        metavar="N",
        help="instances part: DATABASE_POOL_SIZE (default 4)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 s per row after 1 s warm-up, users 64 only; retention: 2 turns of 15 s per "
        "connector, rows aged after 5 s: a smoke run",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.concurrency = 3, 1, [64]
        args.retention_duration, args.retention_rounds, args.retention_seconds = 30, 2, 5
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    CONFIG = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    LATENCY_MS = {"send": ARGS.vonage_latency * 1000, "status": ARGS.moengage_latency * 1000}
    REPORT = []
    main()
