"""The raw baseline for HTTP benchmarks: one FastAPI endpoint that reads the body and answers,
on the same server stack (uvicorn, one process) as textdesk, with no database."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/bare")
async def bare(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
