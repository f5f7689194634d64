"""docs/providers.md documents every simulator setting and scripted suffix."""

from __future__ import annotations

import re
from pathlib import Path

from textdesk.providers.simulator import SimulatorConfig, script

DOCS = Path(__file__).resolve().parents[3] / "docs" / "providers.md"


def _section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Simulator")
    following = re.search(r"^## ", text[start + 3 :], flags=re.MULTILINE)
    return text[start : start + 3 + following.start()] if following else text[start:]


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(TEXTDESK_SIMULATOR_[A-Z0-9_]+)`", _section()))
    wanted = {f"TEXTDESK_SIMULATOR_{name.upper()}" for name in SimulatorConfig.model_fields}
    assert not wanted - documented, f"document in docs/providers.md: {wanted - documented}"
    assert not documented - wanted, f"no such setting: {documented - wanted}"


def test_every_scripted_suffix_is_documented() -> None:
    section = _section()
    suffixes = [*script.SEND_FAILURES, script.HANG_SUFFIX, *script.DLR_OUTCOMES]
    suffixes += list(script.SCRIPTED_REPLIES)
    missing = [s for s in suffixes if f"| `{s}` |" not in section]
    assert not missing, f"document these suffixes: {missing}"
    for reply in script.SCRIPTED_REPLIES.values():
        assert f"`{reply}`" in section
