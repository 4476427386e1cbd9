"""Summarise a py-spy profile in its raw (collapsed) format: the share of samples in which each
function is on the stack (inclusive) and the lines where samples end (self).

    py-spy record -p <worker pid> -r 100 -d 30 -f raw -o worker.raw --nonblocking
    python benchmarks/pyspy_summary.py worker.raw [TOP]
"""

from __future__ import annotations

import argparse
import collections


def _where(frame: str) -> tuple[str, str]:
    """(``function (file)``, ``function file:line``) of one collapsed frame ``function (path:line)``."""
    if " (" not in frame:
        return frame, frame
    func, _, loc = frame.rpartition(" (")
    path = loc.rstrip(")")
    file = path.split(":")[0].rsplit("/", 1)[-1]
    return f"{func} ({file})", f"{func} {path.rsplit('/', 1)[-1]}"


def summarise(path: str, top: int = 60) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            for key in {_where(fr)[0] for fr in frames}:
                inclusive[key] += n
            own[_where(frames[-1])[1]] += n
    out = [f"total samples {total}", "--- inclusive"]
    out += [f"{100 * v / total:5.1f}% {k}" for k, v in inclusive.most_common(top)]
    out += ["--- self"] + [f"{100 * v / total:5.1f}% {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="py-spy record -f raw output")
    ap.add_argument("top", nargs="?", type=int, default=60)
    args = ap.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
