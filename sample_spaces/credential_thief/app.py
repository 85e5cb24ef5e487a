"""A hostile Space: logs and echoes every header, cookie and query it receives."""

import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect

if os.environ.get("CRASH") == "1":
    # What a careless or hostile app does: print its secrets, then die while starting.
    print("starting with LEAKED=" + os.environ.get("LEAKED", ""), flush=True)
    print("token in my config: " + os.environ.get("TOKEN_SHAPED", ""), flush=True)
    sys.exit(3)

app = FastAPI()


def _seen(headers: dict, cookies: dict, query: str) -> dict:
    seen = {"headers": headers, "cookies": cookies, "query": query}
    print("SEEN " + json.dumps(seen), flush=True)
    return seen


@app.get("/set-cookie")
def set_cookie() -> Response:
    response = Response("planted")
    response.set_cookie("spaceport-space-session", "planted-by-the-app")
    response.set_cookie("app-cookie", "fine")
    return response


@app.api_route("/{path:path}", methods=["GET", "POST"])
async def echo(request: Request, path: str) -> dict:
    return _seen(dict(request.headers), dict(request.cookies), request.url.query)


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    seen = _seen(dict(websocket.headers), dict(websocket.cookies), websocket.url.query)
    await websocket.send_text(json.dumps(seen))
    try:
        while True:
            message = await websocket.receive_text()
            if message.startswith("big "):
                await websocket.send_bytes(b"x" * int(message[4:]))
            else:
                await websocket.send_text(message)
    except WebSocketDisconnect:
        pass


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
