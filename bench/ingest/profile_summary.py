"""Summarize a py-spy `--format raw` profile: where the workers' busy time goes.

    python -m bench.ingest.profile_summary bench/results/…/profile.txt [--top 30]

Prints each function's inclusive share of the busy samples (a function counts once per stack),
so "ingest 40%" means 40% of the time a worker thread was busy, it was inside ingest.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """`func (…/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/wt-bench/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarize(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if "(" in f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        leaf[frames[-1]] += count
    lines = [f"busy samples: {total}", "", "inclusive  function"]
    lines += [f"{100 * n / total:8.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self      function"]
    lines += [f"{100 * n / total:8.1f}%  {name}" for name, n in leaf.most_common(top // 2)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(summarize(args.profile, args.top))


if __name__ == "__main__":
    main()
