"""Plant a deliberate bug in a scratch copy of svtree, to show the fuzzer finds it.

    python3 tests/fuzz/planted.py MUTATION [REV]      prints the directory to put first
                                                      on PYTHONPATH
    PYTHONPATH=$(python3 tests/fuzz/planted.py order) python3 -m pytest tests/fuzz -k random

The copy is made from git (REV, default HEAD) into /tmp; the repository is never touched.
Mutations (each one edit, checked to apply exactly once):
  order       at shutdown a service gets `exit` (its stop signal) without waiting for its
              dependents to be gone
  early-kill  SIGKILL right after the stop signal instead of after stop_timeout
  no-reap     the core waits only for its own known children (monitors, main command,
              watcher), never for adopted orphans
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MUTATIONS = {
    "order": ("svtree/core/shutdown.py", [
        ("            if svc.life not in (Life.EXIT_SENT, Life.GONE) and all_gone(svc.name)]",
         "            if svc.life not in (Life.EXIT_SENT, Life.GONE)]"),
    ]),
    "early-kill": ("svtree/states.py", [
        ("st = replace(st, state=State.STOPPING, ready=False, deadline=now + spec.stop_timeout,",
         "st = replace(st, state=State.STOPPING, ready=False, deadline=now,"),
    ]),
    "no-reap": ("svtree/core/reaper.py", [
        ("                pid, status = os.waitpid(-1, os.WNOHANG)\n",
         "                pid, status = 0, 0\n"
         "                for known in list(self.owners):\n"
         "                    try:\n"
         "                        got = os.waitpid(known, os.WNOHANG)\n"
         "                    except ChildProcessError:\n"
         "                        continue\n"
         "                    if got[0]:\n"
         "                        pid, status = got\n"
         "                        break\n"),
    ]),
}


def plant(mutation: str, rev: str = "HEAD") -> str:
    path, edits = MUTATIONS[mutation]
    root = tempfile.mkdtemp(prefix=f"fzplant-{mutation}-")
    archive = subprocess.run(["git", "-C", REPO, "archive", rev, "svtree"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", root], input=archive.stdout, check=True)
    target = os.path.join(root, path)
    with open(target) as f:
        text = f.read()
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"planted.py: {mutation}: expected one {old!r} in {path} at {rev}, "
                             f"found {text.count(old)}")
        text = text.replace(old, new)
    with open(target, "w") as f:
        f.write(text)
    return root


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in MUTATIONS:
        sys.exit(f"usage: planted.py {{{'|'.join(MUTATIONS)}}} [REV]")
    print(plant(*sys.argv[1:]))
