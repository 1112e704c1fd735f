"""`python -m bench.console`: the console's two targets (issue 18), one row each.

1. `pages`: with N messages (default 1,000,000, and their statuses and forwards) in the store,
   every console page answers within 300 ms. The store is filled in bulk (bench/console_fill.py),
   then gunicorn with the production config serves it and each page is fetched `--repeat`
   times by a signed-in client.
2. `overhead`: a console user refreshing the Overview every second leaves the sends' p99
   overhead within noise: the benchmark's fixed-rate sends row (`--rate`/s open), run without
   and then with that user, on the same connector.

    python -m bench.console [--database-url URL] [--messages N] [--only pages|overhead]
"""

import argparse
import http.cookiejar
import re
import runpy
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench import __main__ as bench
from bench import console_fill
from connector.settings import load_settings
from connector.store import open_store

PASSWORD = "bench-console-password"
TARGET_MS = 300.0


class Browser:
    """A signed-in console user: cookies kept, forms' CSRF tokens read from the pages."""

    def __init__(self, url):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = self.get("/console")[1]
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"csrf": token, "password": PASSWORD}).encode()
        with self.opener.open(f"{url}/console/sign-in", data=data, timeout=30) as answer:
            assert 'id="sends"' in answer.read().decode(), "sign-in failed"

    def get(self, path):
        """(milliseconds, page) of one GET."""
        started = time.perf_counter()
        with self.opener.open(self.url + path, timeout=30) as answer:
            page = answer.read().decode()
        return (time.perf_counter() - started) * 1000, page


def env_for(out, database_url, standins):
    return {
        "DATABASE_PATH": str(out / "bench.db"),
        "DATABASE_URL": database_url,
        "VONAGE_API_URL": standins.vonage,
        "MOENGAGE_DELIVERY_URL": f"{standins.moengage}/sms/dlr/custom/bench",
        "VONAGE_SIGNATURE_SECRET": bench.SIGNATURE_SECRET,
        "VONAGE_FROM": "Bench",
        "CONSOLE_PASSWORD": PASSWORD,
    }


def pages_row(args, out, standins):
    out.mkdir()
    env = env_for(out, args.database_url, standins)
    settings = load_settings({"database_path": env["DATABASE_PATH"]}, environ=env)
    store = open_store(settings)
    started = time.monotonic()
    sample = console_fill.fill(store, args.messages)
    store.close()
    print(f"filled {args.messages:,} messages in {time.monotonic() - started:.0f} s")
    paths = [
        "/console?period=24h", "/console?period=7d", "/console?period=30d",
        "/console/messages", f"/console/messages?q={sample['uuid']}",
        f"/console/messages?q={sample['ref']}", f"/console/messages?q=%2B{sample['number']}",
        f"/console/messages?q={sample['campaign']}", f"/console/messages/{sample['uuid']}",
        f"/console/messages/{sample['number']}", "/console/optouts",
        "/console/optouts?page=100", "/console/pending", "/console/health", "/console/setup",
    ]  # fmt: skip
    worst = 0.0
    with bench.Gunicorn("app:app", env, out / "connector.log") as connector:
        user = Browser(connector.url)
        for path in paths:
            times = sorted(user.get(path)[0] for _ in range(args.repeat + 2))[1:-1]
            worst = max(worst, times[-1])
            print(
                f"  {path:<60} p50 {bench.percentile(times, 50):7.1f} ms, max {times[-1]:7.1f} ms"
            )
    met = "yes" if worst <= TARGET_MS else "**no**"
    print(f"| console pages, {args.messages:,} messages | {met} | slowest {worst:.0f} ms, "
          f"{worst / TARGET_MS:.2f} of the 300 ms target |")  # fmt: skip


def overhead_row(args, out, standins):
    out.mkdir()
    env = env_for(out, args.database_url, standins)
    results = {}
    with bench.Gunicorn("app:app", env, out / "overhead.log") as connector:
        spec = {"mode": "open", "rate": args.rate, "weights": {"send": 1}}
        for label in ("alone", "with a console user", "alone again"):
            stop = threading.Event()
            refreshes = []
            viewer = None
            if label == "with a console user":
                user = Browser(connector.url)
                viewer = threading.Thread(target=_refresh, args=(user, stop, refreshes))
                viewer.start()
            result = bench.run_load(connector, standins, spec)
            stop.set()
            if viewer:
                viewer.join()
            sends = result["latencies"].get("send", [])
            p99 = bench.percentile(sends, 99) - bench.LATENCY_MS["send"]
            results[label] = p99
            extra = f", overview p50 {bench.percentile(refreshes, 50):.0f} ms" if refreshes else ""
            print(f"  sends {label}: {len(sends)} answered, p99 overhead {p99:.1f} ms{extra}")
    alone = (results["alone"], results["alone again"])
    noise = abs(alone[1] - alone[0])
    added = results["with a console user"] - max(alone)
    met = "yes" if added <= max(noise, 1.0) else "**no**"
    print(
        f"| sends' p99 overhead with a console user refreshing every 1 s | {met} | "
        f"{results['with a console user']:.0f} ms with, {alone[0]:.0f} and {alone[1]:.0f} ms "
        f"alone before and after: {results['with a console user'] / (sum(alone) / 2):.2f} x "
        "the mean alone |"
    )


def _refresh(user, stop, refreshes):
    while not stop.is_set():
        refreshes.append(user.get("/console")[0])
        stop.wait(1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--only", choices=["pages", "overhead"])
    args = parser.parse_args()
    sys.argv = [sys.argv[0], "--duration", str(args.duration), "--warmup", "3"]
    bench.ARGS = bench.parse_args()
    bench.CONFIG = runpy.run_path(str(bench.ROOT / "gunicorn.conf.py"))
    bench.LATENCY_MS = {"send": bench.ARGS.vonage_latency * 1000}
    standins = bench.StandIns(bench.ARGS.vonage_latency, bench.ARGS.moengage_latency)
    out = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        if args.only != "overhead":
            pages_row(args, out / "pages", standins)
        if args.only != "pages":
            overhead_row(args, out / "overhead", standins)
    finally:
        standins.stop()
        shutil.rmtree(out)  # a million messages take 1.6 GB


if __name__ == "__main__":
    main()
