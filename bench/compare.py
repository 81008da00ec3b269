"""Compare the toggle benchmark's ratio in two checkouts, their rounds interleaved in one run.

On a shared machine a single bench/toggle run moves by a few points from one run to the next;
rounds of both checkouts alternated, in a random order, see the same machine. Both checkouts'
gunicorns serve the same database (consent_bench_toggle), so they must have the same migrations,
and both are driven by this checkout's bench/load.lua, so both must accept what it posts.
Run it with `uv run python -m bench.compare OTHER_CHECKOUT` (this checkout is "a").
"""

import argparse
import random
import tempfile
from pathlib import Path

from bench.stack import ROOT, free_port, gunicorn_start
from bench.toggle import TARGETS, prepare, run_wrk, write_users_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the checkout to compare this one with")
    parser.add_argument("--seconds", type=int, default=5, help="length of each round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each kind per checkout")
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args()

    policy, users, pairs = prepare(args.users)
    checkouts = {"a": ROOT, "b": args.other.resolve()}
    ports = {name: free_port() for name in checkouts}
    servers = [
        gunicorn_start(ports[name], ["--workers", str(args.workers)], checkout=checkout)
        for name, checkout in checkouts.items()
    ]
    totals = {(name, mode): [0, 0.0] for name in checkouts for mode in TARGETS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            users_file = Path(tmp) / "users.txt"
            requests_so_far = dict.fromkeys(TARGETS, 0)
            for counted in [False] + [True] * args.rounds:  # the first round warms up
                for name in random.sample(list(checkouts), len(checkouts)):
                    for mode, path in TARGETS.items():
                        write_users_file(users_file, users, pairs)
                        result = run_wrk(
                            port=ports[name],
                            mode=mode,
                            path=path,
                            version=policy.version,
                            users_file=users_file,
                            seconds=args.seconds if counted else 2,
                            connections=16,
                            earlier_requests=requests_so_far[mode],
                        )
                        requests_so_far[mode] += result["requests"]
                        if result["not_200"] or result["socket_errors"]:
                            raise SystemExit(f"{name} {mode}: responses were not 200 or failed")
                        if counted:
                            totals[(name, mode)][0] += result["requests"]
                            totals[(name, mode)][1] += result["duration_us"] / 1e6
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)

    ratios = {}
    for name, checkout in checkouts.items():
        bare, toggle = (totals[(name, mode)][0] / totals[(name, mode)][1] for mode in TARGETS)
        ratios[name] = toggle / bare
        print(
            f"{name} {checkout}: bare {bare:.0f} req/s, toggle {toggle:.0f} req/s, "
            f"toggle / bare {ratios[name]:.1%}"
        )
    print(f"b - a: {(ratios['b'] - ratios['a']) * 100:+.1f} points")


if __name__ == "__main__":
    main()
