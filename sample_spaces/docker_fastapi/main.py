"""A small FastAPI app served from a Docker Space."""

import hashlib
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

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


@app.post("/upload")
async def upload(request: Request) -> dict[str, object]:
    """Hash a request body as it streams in, however large."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo: " + await websocket.receive_text())
    except WebSocketDisconnect:
        pass
