"""Every outbound path goes through the gate.

Outbound messages come into being in one place, ``messaging.queue_outbound_many`` (which
``queue_outbound`` calls for one message), which runs the gate before it inserts; the worker
runs it again at claim. These tests read the source: a new
path that inserts messages itself, or a new caller of ``queue_outbound``, fails here until it
is listed (and reviewed).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "textdesk"

#: Every function that creates outbound messages, and why it is there.
KNOWN_CALLERS = {
    ("services/messaging.py", "send_message"),  # API and UI one-to-one sends
    ("services/optout.py", "reply"),  # the one STOP/HELP/START answer (purpose compliance)
    ("services/conversations.py", "reply"),  # an agent's reply from the inbox
    # An agent confirming a flagged reply as an opt-out: the one confirmation text, with
    # optout's idempotency key (purpose compliance).
    ("services/conversations.py", "review"),
    # An automation's send step (purpose informational, the run's idempotency key).
    ("services/automations/timers.py", "_send"),
    # A person sending an automation's draft with one action (key draft:<id>).
    ("services/automations/drafts.py", "send_draft"),
}
#: Every function that creates outbound messages in groups (one transaction for many people's
#: separate actions), and why it is there.
KNOWN_GROUP_CALLERS = {
    ("services/messaging.py", "queue_outbound"),  # the single message is a group of one
    # The send screen: one message per contact and step, each from its own human action; the
    # actions that arrive together share a transaction (group commit).
    ("services/p2p.py", "_send_wave"),
}


class _Calls(ast.NodeVisitor):
    """(innermost enclosing function, called name) for every call."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.calls: set[tuple[str, str]] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        callee = node.func
        name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
        self.calls.add((self.stack[-1] if self.stack else "<module>", name))
        self.generic_visit(node)


def _functions_calling(name: str) -> set[tuple[str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        visitor = _Calls()
        visitor.visit(ast.parse(path.read_text()))
        found |= {
            (str(path.relative_to(SRC)), fn) for fn, called in visitor.calls if called == name
        }
    return found


def test_only_queue_outbound_and_receive_inbound_insert_messages() -> None:
    inserts = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "insert"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "messages"
            ):
                inserts.add(str(path.relative_to(SRC)))
    assert inserts == {"services/messaging.py"}


def test_every_caller_of_queue_outbound_is_known() -> None:
    assert _functions_calling("queue_outbound") == KNOWN_CALLERS
    assert _functions_calling("queue_outbound_many") == KNOWN_GROUP_CALLERS


def test_queue_outbound_runs_the_gate_before_inserting() -> None:
    source = (SRC / "services" / "messaging.py").read_text()
    wave = source[source.index("def _queue_wave") : source.index("def _known_keys")]
    assert wave.index("_plan(") < wave.index("_INSERT_MESSAGES")
    plan = source[source.index("def _plan(") :]
    assert plan.index("compliance.evaluate(") < plan.index("status_for(")
    # The outbound insert is built once (per engine) and used only there.
    assert "_INSERT_MESSAGES = {d: _insert_messages_statement(d)" in source
    assert source.count("_INSERT_MESSAGES") - wave.count("_INSERT_MESSAGES") == 1
    assert source.count("messages.insert()") == 3  # the two engines' outbound, and the inbound
    build = source[source.index("def _insert_messages_statement") :]
    assert build[: build.index("\n\n\n")].count("messages.insert()") == 2


def test_the_claim_runs_the_gate_again() -> None:
    source = (SRC / "delivery" / "outbox.py").read_text()
    claim = source[source.index("def _claim_channel") : source.index("# --- results")]
    assert "compliance.evaluate(" in claim
