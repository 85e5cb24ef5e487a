"""A small FastAPI app served from a Docker Space."""

import os

from fastapi import FastAPI

app = FastAPI(title="Docker FastAPI Space")


@app.get("/")
def root() -> dict[str, str]:
    return {"message": "Hello from a docker Space"}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/greeting")
def greeting() -> str | None:
    return os.environ.get("GREETING")


@app.get("/env/{name}")
def env(name: str) -> str | None:
    return os.environ.get(name)
