"""The Hub's answer for repo ids no Space can have: a 404 with X-Error-Code RepoNotFound, so
huggingface_hub raises RepositoryNotFoundError and `repo_exists`, `file_exists` and
`revision_exists` return False instead of failing on a framework 404 or a 405.

* ids without a namespace (`demo`): `/api/spaces/demo[/revision/...]`,
  `/spaces/demo/resolve/...`;
* models and datasets, which Spaceport does not host: `/api/models/...`,
  `/api/datasets/...` and their `resolve` URLs (`/{id}/resolve/...`,
  `/datasets/{id}/resolve/...`).

Registered after every other router (orchestrator/app.py): each of these paths is only
what no real route took.
"""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api.errors import ERROR_RESPONSES, REPO_NOT_FOUND, HubError

router = APIRouter(responses=ERROR_RESPONSES)


def _no_namespace(name: str) -> HubError:
    return HubError(
        404,
        f"Repository not found: {name} (a Space id is namespace/name, e.g. alice/{name})",
        REPO_NOT_FOUND,
    )


def _not_hosted(kind: str, repo: str) -> HubError:
    return HubError(
        404,
        f"Repository not found: {repo} (Spaceport hosts Spaces only, not {kind})",
        REPO_NOT_FOUND,
    )


# One route per method: each gets its own OpenAPI operation id.
@router.get("/api/spaces/{name}", include_in_schema=False)
@router.head("/api/spaces/{name}", include_in_schema=False)
@router.get("/api/spaces/{name}/revision/{rev:path}", include_in_schema=False)
@router.get("/spaces/{name}/resolve/{rest:path}", include_in_schema=False)
@router.head("/spaces/{name}/resolve/{rest:path}", include_in_schema=False)
def space_without_namespace(name: str) -> None:
    raise _no_namespace(name)


@router.get("/api/models/{repo:path}", include_in_schema=False)
@router.head("/api/models/{repo:path}", include_in_schema=False)
def model_info(repo: str) -> None:
    raise _not_hosted("models", repo)


@router.get("/api/datasets/{repo:path}", include_in_schema=False)
@router.head("/api/datasets/{repo:path}", include_in_schema=False)
@router.get("/datasets/{repo:path}/resolve/{rest:path}", include_in_schema=False)
@router.head("/datasets/{repo:path}/resolve/{rest:path}", include_in_schema=False)
def dataset_info(repo: str) -> None:
    raise _not_hosted("datasets", repo)


@router.get("/{repo:path}/resolve/{rest:path}", include_in_schema=False)
@router.head("/{repo:path}/resolve/{rest:path}", include_in_schema=False)
def model_file(repo: str) -> None:
    raise _not_hosted("models", repo)
