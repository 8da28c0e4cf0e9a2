"""How compile time grows with the tree: 100, 1,000 and 5,000 services.

Each tree is a random-ish DAG (every service depends on up to 3 earlier ones, a fifth of
them through s6-rc's dependencies.d/), with a run script, a service.toml for most, and a
finish script for some, written to a temporary directory (tmpfs when /dev/shm exists).
Per-service time should stay flat: the compiler is linear in services + dependencies.

    python3 bench/compile_bench.py [--sizes 100,1000,5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from svtree.compiler import compile_tree  # noqa: E402

RUN = "#!/bin/sh\nexec sleep 1000\n"
FINISH = "#!/bin/sh\necho \"finish $*\"\n"


def write_tree(root: str, count: int, rng: random.Random) -> str:
    tree = os.path.join(root, f"tree-{count}")
    os.mkdir(tree)
    names = [f"svc-{i:05d}" for i in range(count)]
    for i, name in enumerate(names):
        service = os.path.join(tree, name)
        os.mkdir(service)
        run = os.path.join(service, "run")
        with open(run, "w") as f:
            f.write(RUN)
        os.chmod(run, 0o755)
        deps = rng.sample(names[max(0, i - 50):i], min(i, rng.randint(0, 3)))
        if i % 5 == 0 and deps:
            os.mkdir(os.path.join(service, "dependencies.d"))
            for dep in deps:
                open(os.path.join(service, "dependencies.d", dep), "w").close()
        elif i % 7 != 0:
            quoted = ", ".join(f'"{d}"' for d in deps)
            with open(os.path.join(service, "service.toml"), "w") as f:
                f.write(f'depends_on = [{quoted}]\nrestart = "on-failure"\nstop_timeout = {rng.randint(1, 30)}\n'
                        f'environment = {{ INDEX = "{i}" }}\n')
        if i % 10 == 0:
            finish = os.path.join(service, "finish")
            with open(finish, "w") as f:
                f.write(FINISH)
            os.chmod(finish, 0o755)
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="compiles per size; the best is shown")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = tempfile.mkdtemp(prefix="svtree-bench-", dir=base)
    rng = random.Random(42)
    try:
        print(f"trees in {root}; best of {args.repeat} compiles each")
        print(f"{'services':>9}  {'levels':>6}  {'compile':>10}  {'per service':>12}")
        for count in sizes:
            tree = write_tree(root, count, rng)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                plan = compile_tree(tree)
                times.append(time.perf_counter() - start)
            best = min(times)
            assert len(plan.services) == count
            print(f"{count:>9}  {len(plan.levels):>6}  {best * 1000:>8.1f}ms  {best / count * 1e6:>10.1f}us")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
