"""The orphan maker in Python, for machines without a C compiler (see orphan_maker.c).

    python3 orphan_maker.py COUNT MARKER
"""

import ctypes
import os
import sys
import time


def main() -> int:
    count, marker = int(sys.argv[1]), sys.argv[2]
    try:
        ctypes.CDLL(None).prctl(15, b"orphanmaker", 0, 0, 0)  # PR_SET_NAME
    except OSError:
        pass
    with open(marker + ".start", "w") as f:
        f.write(f"{os.getpid()} {time.monotonic():.9f}\n")
    made = 0
    while made < count:
        try:
            child = os.fork()
        except BlockingIOError:
            time.sleep(0.001)
            continue
        if child == 0:
            try:
                os.fork()
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        made += 1
    with open(marker + ".end.tmp", "w") as f:
        f.write(f"{time.monotonic():.9f}\n")
    os.rename(marker + ".end.tmp", marker + ".end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
