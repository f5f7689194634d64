"""Status-callback ingestion: signed delivery reports POSTed by wrk to ``textdesk serve``.

Each request is a real simulator delivery report (HMAC-signed, verified by the adapter) for a
message the database holds as ``sent``; the handler verifies, parses and applies it in a
transaction. Raw baseline in the same run: a bare FastAPI endpoint on the same uvicorn stack.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import (
    count_by_status,
    database,
    free_port,
    loadavg,
    run_wrk,
    seed_outbox,
    start,
    stop,
    wait_http,
)
from textdesk.providers.simulator import signing

SECRET = "simulator-secret"  # noqa: S105 - the simulator's public default
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = 64
#: While iterating: ``BENCH_CALLBACK_CASES=postgresql:1,postgresql:2`` runs only those cases.
CASES = [
    (engine, int(processes))
    for engine, processes in (
        case.split(":")
        for case in os.environ.get(
            "BENCH_CALLBACK_CASES", "postgresql:1,postgresql:2,sqlite:1"
        ).split(",")
    )
]


def _lua(path: str, n: int, workdir: Path) -> Path:
    """A wrk script cycling through ``n`` pre-signed delivery reports (read from a data file:
    LuaJIT refuses a function with more than 65,536 constants)."""
    now = int(time.time())
    data = workdir / "callbacks.txt"
    with data.open("w") as out:
        for k in range(n):
            body = json.dumps({"id": f"B{k}", "status": "delivered"})
            out.write(f"{signing.sign(SECRET, now, body.encode())} {body}\n")
    script = workdir / "callbacks.lua"
    script.write_text(f"""
local reqs = {{}}
local i = 0
math.randomseed(os.time())
init = function(args)
  for line in io.lines("{data}") do
    local sig, body = line:match("^(%S+) (.*)$")
    reqs[#reqs + 1] = wrk.format("POST", "{path}", {{
      ["Content-Type"] = "application/json",
      ["{signing.TIMESTAMP_HEADER}"] = "{now}",
      ["{signing.SIGNATURE_HEADER}"] = sig,
    }}, body)
  end
  i = math.random(#reqs)  -- threads start at different reports
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
""")
    return script


def _bare_lua(workdir: Path) -> Path:
    script = workdir / "bare.lua"
    script.write_text(
        'wrk.method = \'POST\'\nwrk.body = \'{"id": "B1", "status": "delivered"}\'\n'
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    return script


def _wrk(url: str, script: Path) -> dict[str, Any]:
    return run_wrk(url, script, threads=2, connections=CONNECTIONS, duration=DURATION, timeout=120)


def run(workdir: Path, *, messages: int = 40_000) -> list[dict[str, object]]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (make bench does)")
    results: list[dict[str, object]] = []
    port = free_port()
    bare = start(["-m", "bench.bare_app", str(port)], dict(os.environ), workdir / "bare.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/docs")
        r = _wrk(f"http://127.0.0.1:{port}/bare", _bare_lua(workdir))
        results.append(
            {
                "case": "raw: bare FastAPI endpoint",
                "engine": "-",
                "per_second": round(r["rps"]),
                "p50_ms": round(r["p50"], 1),
                "p99_ms": round(r["p99"], 1),
                "non_2xx": r["errors"],
                "applied": "-",
                "load": loadavg(),
            }
        )
    finally:
        stop(bare)
    for engine, web_workers in CASES:
        with database(engine, workdir) as url:
            _org, channel_id = seed_outbox(
                url, messages, provider_url="http://127.0.0.1:9", status="sent"
            )
            port = free_port()
            env = {
                **os.environ,
                "TEXTDESK_DATABASE_URL": url,
                "TEXTDESK_PORT": str(port),
                "TEXTDESK_BASE_URL": f"http://127.0.0.1:{port}",
                "TEXTDESK_EMBEDDED_WORKER": "false",
                "TEXTDESK_SIMULATOR_ENABLED": "false",
                "TEXTDESK_LOG_LEVEL": "WARNING",
                "TEXTDESK_WEB_WORKERS": str(web_workers),
            }
            server = start(["-m", "textdesk", "serve"], env, workdir / f"serve-{engine}.log")
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz")
                path = f"/webhooks/simulator/{channel_id}/status"
                r = _wrk(f"http://127.0.0.1:{port}{path}", _lua(path, messages, workdir))
            finally:
                stop(server)
                log = (workdir / f"serve-{engine}.log").read_text()[-2000:]
            applied = count_by_status(url).get("delivered", 0)
            results.append(
                {
                    "case": f"signed status callbacks -> textdesk serve, {web_workers} process(es)",
                    "engine": engine,
                    "per_second": round(r["rps"]),
                    "p50_ms": round(r["p50"], 1),
                    "p99_ms": round(r["p99"], 1),
                    "non_2xx": r["errors"],
                    "applied": applied,
                    "load": loadavg(),
                }
            )
            print(results[-1], flush=True)
            if r["errors"]:
                print(log)
    return results
