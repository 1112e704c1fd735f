"""`python -m bench.health`: GET /health's latency while the benchmark's mix (1 send : 2 status
webhooks, closed loop) runs, since /health now reads the warnings (target: p99 under 50 ms).

Uses the benchmark's stand-ins, gunicorn runner and load generator; prints one line per kind.
"""

import argparse
import runpy
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import __main__ as bench


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    sys.argv = [sys.argv[0], "--duration", str(args.duration), "--warmup", "2"]
    bench.ARGS = bench.parse_args()
    bench.CONFIG = runpy.run_path(str(bench.ROOT / "gunicorn.conf.py"))
    out = Path(tempfile.mkdtemp(prefix="bench-health-"))
    standins = bench.StandIns(0.2, 0.05)
    latencies = []
    try:
        env = {
            "DATABASE_PATH": str(out / "bench.db"),
            "DATABASE_URL": args.database_url,
            "VONAGE_API_URL": standins.vonage,
            "MOENGAGE_DELIVERY_URL": f"{standins.moengage}/sms/dlr/custom/bench",
            "VONAGE_SIGNATURE_SECRET": bench.SIGNATURE_SECRET,
            "VONAGE_FROM": "Bench",
        }
        with bench.Gunicorn("app:app", env, out / "connector.log") as connector:
            stop = threading.Event()

            def probe():
                while not stop.is_set():
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"{connector.url}/health", timeout=5) as answer:
                        answer.read()
                    latencies.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.05)

            prober = threading.Thread(target=probe)
            prober.start()
            result = bench.run_load(
                connector,
                standins,
                {
                    "mode": "closed",
                    "concurrency": args.users,
                    "weights": {"send": 1, "status": 2},
                    "duplicates": 0.1,
                },
            )
            stop.set()
            prober.join()
    finally:
        standins.stop()
    for kind in ("send", "status"):
        values = result["latencies"].get(kind, [])
        print(f"{kind}: {len(values)} answered 200, {_percentiles(values)}")
    print(f"/health: {len(latencies)} probes, {_percentiles(latencies)}")


def _percentiles(values):
    p50, p99 = bench.percentile(values, 50), bench.percentile(values, 99)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"


if __name__ == "__main__":
    main()
