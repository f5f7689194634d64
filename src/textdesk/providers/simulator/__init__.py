"""The built-in simulator provider: a fake carrier (``carrier.py``) reachable over HTTP like a
real one, and the adapter that talks to it (``adapter.py``). The demo, the end-to-end tests and
the benchmarks run on it; see docs/providers.md, section *Simulator*.
"""

from __future__ import annotations

from textdesk.providers.simulator.adapter import SimulatorProvider, create, validate_config
from textdesk.providers.simulator.carrier import create_carrier_app
from textdesk.providers.simulator.config import SimulatorConfig

PROVIDER_CLASS = SimulatorProvider

__all__ = [
    "PROVIDER_CLASS",
    "SimulatorConfig",
    "SimulatorProvider",
    "create",
    "create_carrier_app",
    "validate_config",
]
