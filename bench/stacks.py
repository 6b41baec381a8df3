"""Summarise a py-spy profile in collapsed-stack form (`py-spy record --format raw`, or
`bench/peer.py --profile DIR`): where the samples went, by package and by function.

    python bench/stacks.py PROFILE.txt [--top 25] [--thread-prefix process]

- By package: each sample's *innermost* frame (its self time), grouped by the top-level package
  of its file (`openai`, `grpc`, `asyncio`, `agentflow_grpc.services`, …).
- Inclusive by package: the share of samples with a frame of that package anywhere on the stack
  (what a package and everything it calls costs).
- By function: the innermost frames with the most samples.

py-spy records busy samples only (without `--idle`); samples of a thread waiting in a selector
or a condition are counted apart anyway, so the shares are of the CPU the process spent.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
IDLE = ("select", "wait", "EpollSelector.select", "Condition.wait", "Event.wait")
SITE = re.compile(r".*/(?:site|dist)-packages/")
STDLIB = re.compile(r".*/lib/python3\.\d+/")


def package(file: str) -> str:
    """`openai`, `asyncio`, `agentflow_grpc.services`: who owns a frame's file (py-spy names
    files from their package root: `openai/_models.py`, `asyncio/events.py`)."""
    if SITE.match(file):
        file = SITE.sub("", file)
    elif STDLIB.match(file):
        file = STDLIB.sub("", file)
    parts = file.split("/")
    if parts[0] == "agentflow_grpc" and len(parts) > 2:
        return f"agentflow_grpc.{parts[1]}"
    return parts[0] if len(parts) > 1 else f"{parts[0]} (top-level module)"


def parse(line: str) -> tuple[list[tuple[str, str]], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    frames = []
    for raw in stack.split(";"):
        match = FRAME.match(raw)
        frames.append((match["function"], match["file"]) if match else (raw, "?"))
    return frames, int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    self_by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    busy = idle = 0
    for line in args.profile.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = parse(line)
        function, file = frames[-1]
        if file == "?" or (function in IDLE and file.startswith(("threading", "selectors"))):
            idle += count  # a process line alone, or a thread waiting
            continue
        busy += count
        self_by_package[package(file)] += count
        for owner in {package(f) for _, f in frames if f != "?"}:
            inclusive[owner] += count
        by_function[f"{function} ({file})"] += count

    print(f"{busy} busy samples, {idle} idle ({args.profile})")
    print("\nself time by package:")
    for name, count in self_by_package.most_common(args.top):
        print(f"  {100 * count / busy:5.1f} %  {name}")
    print("\ninclusive by package (a frame anywhere on the stack):")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / busy:5.1f} %  {name}")
    print("\nself time by function:")
    for name, count in by_function.most_common(args.top):
        print(f"  {100 * count / busy:5.1f} %  {name}")


if __name__ == "__main__":
    main()
