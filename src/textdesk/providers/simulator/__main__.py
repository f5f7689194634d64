"""Serve the fake carrier alone: ``python -m textdesk.providers.simulator --port 9100``.

Configuration comes from ``TEXTDESK_SIMULATOR_*`` variables (see docs/providers.md). Point a
simulator channel at it with the channel config ``{"url": "http://127.0.0.1:9100"}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from textdesk.providers.simulator.carrier import create_carrier_app
from textdesk.providers.simulator.config import SimulatorConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m textdesk.providers.simulator",
        description="Run the textdesk carrier simulator as its own HTTP server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=9100, help="port to bind (9100)")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (warning: access logs cost throughput in benchmarks)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    app = create_carrier_app(SimulatorConfig())
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
