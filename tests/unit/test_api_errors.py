"""The one error shape (orchestrator/api/errors.py) for each kind of refusal: a route's
HubError, Starlette's and FastAPI's own HTTPExceptions, validation, and a crash."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Query
from fastapi.testclient import TestClient

from orchestrator.api import errors, input_errors


def _client() -> TestClient:
    app = FastAPI()
    input_errors.install(app)

    @app.get("/hub")
    def hub() -> None:
        raise errors.HubError(404, "Repository not found: a/b\nsecond line é", "RepoNotFound")

    @app.get("/plain")
    def plain() -> None:
        raise HTTPException(409, "taken", headers={"Retry-After": "1"})

    @app.get("/typed")
    def typed(n: int = Query()) -> None:
        return None

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("a bug, with a secret inside")

    return TestClient(app, raise_server_exceptions=False)


def _shape(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    body = response.json()
    assert list(body) == ["error"] and body["error"]
    assert response.headers["x-error-message"]
    return body["error"]


def test_every_kind_of_refusal_has_the_one_shape() -> None:
    client = _client()
    hub = client.get("/hub")
    assert _shape(hub, 404) == "Repository not found: a/b\nsecond line é"
    assert hub.headers["x-error-code"] == "RepoNotFound"
    assert hub.headers["x-error-message"] == "Repository not found: a/b second line \\xe9"
    plain = client.get("/plain")
    assert _shape(plain, 409) == "taken" and plain.headers["retry-after"] == "1"
    assert "n" in _shape(client.get("/typed?n=x"), 422)
    assert "No such route" in _shape(client.get("/nowhere"), 404)
    assert "POST" in _shape(client.post("/hub"), 405)
    assert "NUL" in _shape(client.get("/hub?x=%00"), 400)
    crashed = _shape(client.get("/crash"), 500)
    assert "secret" not in crashed  # an exception's text is the log's, not the client's
    unauthorized = errors.error_response(401, "token expired")
    assert unauthorized.headers["www-authenticate"].startswith("Bearer")
