"""``python -m bench``: run every benchmark and print markdown tables."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench import agents, callbacks, dispatch, imports, segments
from bench.common import machine


def table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("which", nargs="*", default=["dispatch", "callbacks", "agents", "segments"])
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    with tempfile.TemporaryDirectory(prefix="textdesk-bench-") as tmp:
        workdir = Path(tmp)
        if "dispatch" in args.which:
            print("## Dispatch throughput\n")
            print(table(dispatch.run(workdir)) + "\n", flush=True)
        if "imports" in args.which:
            print("## Import (1,000,000-row CSV)\n")
            print(table(imports.run(workdir)) + "\n", flush=True)
        if "callbacks" in args.which:
            print("## Status-callback ingestion\n")
            print(table(callbacks.run(workdir)) + "\n", flush=True)
        if "agents" in args.which:
            print("## Send screen: simulated agents\n")
            print(table(agents.run(workdir)) + "\n", flush=True)
        if "segments" in args.which:
            print("## Segment counts\n")
            print(table(segments.run(workdir)) + "\n", flush=True)


if __name__ == "__main__":
    main()
