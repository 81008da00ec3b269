"""Compare the toggle's throughput in two checkouts, their rounds interleaved in one run.

On a shared machine one bench/toggle run moves by a few points from the next; rounds of both
checkouts alternated, in a random order, see the same machine. Each checkout gets a database of
its own, prepared and migrated by its own code (a checkout that reads BENCH_TOGGLE_DB gets
consent_bench_compare_a or _b; an older one uses consent_bench_toggle), and both are driven by
this checkout's bench/load.lua. Run it with `uv run python -m bench.compare OTHER_CHECKOUT`
(this checkout is "a").
"""

import argparse
import json
import os
import random
import subprocess
import tempfile
from pathlib import Path

import psycopg

from bench.stack import PG_URL, ROOT, free_port, gunicorn_start, python_for
from bench.toggle import TARGETS, run_wrk

# Run in each checkout, with its own code: prepare its database, say what it made.
PREPARE = """
import json, sys
from bench import toggle
policy, users, pairs = toggle.prepare(int(sys.argv[1]))
print("PREPARED " + json.dumps({
    "database": toggle.DB_NAME,
    "policy_version": policy.version,
    "users": [[user.pk, key, csrf] for user, (key, csrf) in zip(users, pairs)],
}))
"""


def prepare(checkout: Path, name: str, users: int) -> dict:
    output = subprocess.run(
        [python_for(checkout), "-c", PREPARE, str(users)],
        cwd=checkout,
        env=os.environ | {"BENCH_TOGGLE_DB": f"consent_bench_compare_{name}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("PREPARED "))
    return json.loads(line.removeprefix("PREPARED "))


def write_users_file(path: Path, prepared: dict) -> None:
    """Give each user the value that changes their current state, so no POST is a no-op."""
    with psycopg.connect(f"{PG_URL}/{prepared['database']}") as connection:
        allowed = {
            user_id
            for (user_id,) in connection.execute(
                "SELECT user_id FROM consent_trainingconsent WHERE state = 'allowed'"
            )
        }
    lines = [
        f"{key} {csrf} {'off' if user_id in allowed else 'on'}"
        for user_id, key, csrf in prepared["users"]
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the checkout to compare this one with")
    parser.add_argument("--seconds", type=int, default=5, help="length of each round")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each kind per checkout")
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args()

    checkouts = {"a": ROOT, "b": args.other.resolve()}
    prepared = {name: prepare(checkout, name, args.users) for name, checkout in checkouts.items()}
    if prepared["a"]["database"] == prepared["b"]["database"]:
        raise SystemExit("both checkouts would share one database")
    ports = {name: free_port() for name in checkouts}
    servers = [
        gunicorn_start(
            ports[name],
            ["--workers", str(args.workers)],
            checkout=checkout,
            env={
                "DATABASE_URL": f"{PG_URL}/{prepared[name]['database']}",
                "WAREHOUSE_DATABASE_URL": f"{PG_URL}/{prepared[name]['database']}_warehouse",
            },
        )
        for name, checkout in checkouts.items()
    ]
    totals = {(name, mode): [0, 0.0] for name in checkouts for mode in TARGETS}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            users_file = Path(tmp) / "users.txt"
            requests_so_far = {key: 0 for key in totals}
            for counted in [False] + [True] * args.rounds:  # the first round warms up
                for name in random.sample(list(checkouts), len(checkouts)):
                    for mode, path in TARGETS.items():
                        write_users_file(users_file, prepared[name])
                        result = run_wrk(
                            port=ports[name],
                            mode=mode,
                            path=path,
                            version=prepared[name]["policy_version"],
                            users_file=users_file,
                            seconds=args.seconds if counted else 2,
                            connections=16,
                            earlier_requests=requests_so_far[(name, mode)],
                        )
                        requests_so_far[(name, mode)] += result["requests"]
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
