"""CPU per answer of one worker, split between its event loop and its request threads.

`python -m bench.loop_cpu --help`. One gunicorn worker (the production config otherwise), the
stand-ins, and the load generator for a few seconds; then the CPU the worker's main thread
(its event loop) and its other threads (the request threads) used per answer, read from /proc.
CPU per answer moves far less than answers/s when the machine is shared, so it is what an A/B
of two server layers compares. Loopback only; every process started is stopped.
"""

import argparse
import os
from pathlib import Path

from bench.__main__ import StandIns, children, loadgen_spec, run_loadgen
from bench.faults import OUT, Server


def thread_cpu(pid):
    """CPU seconds of each thread of `pid`."""
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        used[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=64, help="closed-loop users (default 64)")
    parser.add_argument("--rate", type=int, help="an open loop at this rate instead of users")
    parser.add_argument("--seconds", type=float, default=6, help="measured seconds (default 6)")
    parser.add_argument("--max-rps", default="30", help="VONAGE_MAX_RPS (default 30; 0: none)")
    args = parser.parse_args()
    shape = (
        {"mode": "open", "rate": args.rate}
        if args.rate
        else {"mode": "closed", "concurrency": args.users}
    )
    OUT.mkdir(parents=True, exist_ok=True)
    standins = StandIns(0.2, 0.05)
    try:
        env = {"VONAGE_MAX_RPS": args.max_rps, "WEB_CONCURRENCY": "1", "VONAGE_TIMEOUT": "4"}
        server = Server(standins, env=env, name="loop-cpu")
        try:
            pid = children(server.proc.pid)[0]
            before = thread_cpu(pid)
            spec = loadgen_spec(server.port, 0, args.seconds, weights={"send": 1}, **shape)
            result = run_loadgen(spec)
            after = thread_cpu(pid)
        finally:
            server.stop()
    finally:
        standins.stop()
    answers = sum(result["codes"]["send"].values())
    loop = after[pid] - before.get(pid, 0.0)
    threads = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != pid)
    print(
        f"{answers / args.seconds:.0f} answers/s {dict(result['codes']['send'])}; CPU ms per "
        f"answer: loop {loop * 1000 / answers:.3f}, request threads {threads * 1000 / answers:.3f}"
    )


if __name__ == "__main__":
    main()
