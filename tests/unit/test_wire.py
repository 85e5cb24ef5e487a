"""The typed wire shapes (orchestrator/api/wire.py) send exactly the JSON the Hub clients
parse: the same field names, in the same order, nulls where the Hub sends nulls and absent
fields where it leaves them out; and the OpenAPI document names them."""

from __future__ import annotations

import httpx

from orchestrator.api import wire
from orchestrator.core.settings import get_settings
from sandbox.hardware import CATALOGUE, sized_tier
from tests.unit import test_api_events as shared

# The live API of test_api_events, on SQLite and PostgreSQL.
api, Api = shared.api, shared.Api

RUNTIME_KEYS = [
    "stage",
    "hardware",
    "errorMessage",
    "sha",
    "gcTimeout",
    "replicas",
    "devMode",
    "domains",
    "buildNotes",  # Spaceport's own, after the Hub's
]
SPACE_KEYS = [
    "_id", "id", "author", "sha", "createdAt", "lastModified", "private", "gated", "disabled",
    "host", "subdomain", "sdk", "likes", "tags", "cardData", "duplicatedFrom", "runtime",
]  # fmt: skip


def test_space_info_and_runtime_keep_the_hubs_fields_and_nulls(api: Api) -> None:
    info = api.get("/api/spaces/alice/demo").json()
    assert list(info) == [*SPACE_KEYS, "siblings"]  # main's files: none before its first commit
    assert info["siblings"] == []
    assert info["_id"] == api.demo.uid and info["id"] == "alice/demo"
    assert info["sha"] is None and info["cardData"] == {} and info["tags"] == []
    runtime = info["runtime"]
    assert list(runtime) == RUNTIME_KEYS
    assert runtime["hardware"] == {"current": None, "requested": "cpu-basic"}
    assert runtime["errorMessage"] is None and runtime["replicas"] == {"current": 0, "requested": 1}
    assert api.get("/api/spaces/alice/demo/runtime").json() == runtime
    listed = api.get("/api/spaces?author=alice").json()
    assert [s["id"] for s in listed] == ["alice/demo"]  # the private one is not listed
    assert list(listed[0]) == SPACE_KEYS


def test_whoami_hardware_secrets_and_variables_shapes(api: Api) -> None:
    me = api.get("/api/whoami-v2", api.alice).json()
    assert me["name"] == "alice" and me["email"] is None and me["orgs"] == []
    assert me["auth"] == {
        "type": "access_token",
        "accessToken": {"displayName": "token", "role": "write"},
    }
    tiers = api.get("/api/spaces/hardware").json()
    overrides = get_settings().hardware_overrides
    assert tiers == [sized_tier(name, overrides).to_hub_json() for name in CATALOGUE]
    assert any("accelerator" not in t for t in tiers) and any("accelerator" in t for t in tiers)
    auth = {"authorization": f"Bearer {api.alice}"}
    added = httpx.post(
        f"{api.url}/api/spaces/alice/demo/variables", json={"key": "K", "value": "v"}, headers=auth
    ).json()
    assert list(added) == ["K"] and list(added["K"]) == ["value", "description", "updatedAt"]
    secret = httpx.post(
        f"{api.url}/api/spaces/alice/demo/secrets", json={"key": "S", "value": "x"}, headers=auth
    ).json()
    assert secret == {"key": "S"}
    secrets = api.get("/api/spaces/alice/demo/secrets", api.alice).json()
    assert list(secrets["S"]) == ["description", "updatedAt"]  # never the value


def test_the_create_conflict_keeps_its_url_and_errors_have_one_shape(api: Api) -> None:
    auth = {"authorization": f"Bearer {api.alice}"}
    again = httpx.post(
        f"{api.url}/api/repos/create",
        json={"name": "demo", "type": "space", "sdk": "static"},
        headers=auth,
    )
    assert again.status_code == 409
    assert set(again.json()) == {"error", "url"} and again.json()["url"].endswith("alice/demo")
    assert again.headers["x-error-message"]


def test_optional_fields_are_left_out_not_null() -> None:
    entry = wire.TreeEntry(type="file", oid="o", size=1, path="a")
    assert entry.model_dump(mode="json") == {"type": "file", "oid": "o", "size": 1, "path": "a"}
    entry.lfs = wire.EntryLfs(oid="x", size=9, pointer_size=130)
    assert entry.model_dump(mode="json")["lfs"] == {"oid": "x", "size": 9, "pointerSize": 130}
    assert wire.ErrorBody(error="no").model_dump(mode="json") == {"error": "no"}


def test_the_openapi_document_names_the_wire_models(api: Api) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("SpaceInfo", "SpaceRuntime", "Whoami", "TreeEntry", "EventPage", "ErrorBody"):
        assert name in schemas, name
    info = spec["paths"]["/api/spaces/{owner}/{name}"]["get"]["responses"]
    # SpaceInfo with main's `siblings` and what only `expand=` asks
    assert info["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SpaceDetails")
    assert info["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
