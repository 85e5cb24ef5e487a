"""Writing files to a Space the way huggingface_hub's upload_file / upload_folder /
create_commit do: README validation, preupload (which files go through LFS), and the
NDJSON commit. A commit to main deploys exactly like a push (deploy.deploy_commit).

Large files and huggingface_hub >= 1.20: when the `hf_xet` package is importable (it is
installed with huggingface_hub by default), the client sends every `uploadMode: "lfs"` file
through Xet, without asking the server, and Spaceport has no Xet storage. It uses the LFS
batch API instead when HF_HUB_DISABLE_XET=1 is set (or when the content is given as a file
object). Files under the LFS threshold are "regular" and work with every client setup.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, origin, require_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError, error_response
from orchestrator.api.files import servable
from orchestrator.builds.deploy import deploy_commit
from orchestrator.community import pull_requests as pr_commits
from orchestrator.core.auth import Access, Principal
from orchestrator.core.db import get_session
from orchestrator.core.limits import TOO_LARGE, check_build_room, check_space_room
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import gitignore, lfs
from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree
from orchestrator.repos.commit import AddFile, AddLfs, CommitError, Delete, Operation
from orchestrator.spaces.config import SpaceConfigError, check_front_matter_yaml

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

# The Hub's rule, as far as it shows: files over 10 MB, and files its .gitattributes
# tracks with LFS, are LFS; small binary files are not (they are regular blobs on the Hub).
LFS_THRESHOLD = 10_000_000
XET_UNSUPPORTED = (
    "Spaceport stores large files with Git LFS, not Xet. Set HF_HUB_DISABLE_XET=1 before "
    "importing huggingface_hub to upload files over 10 MB (or LFS-tracked ones)."
)


def _yaml_answer(problem: str | None = None, status: int = 200) -> JSONResponse:
    answer = wire.YamlValidation(errors=[wire.YamlProblem(message=problem)] if problem else [])
    return JSONResponse(answer.model_dump(mode="json"), status)


@router.post(
    "/validate-yaml",
    response_model=wire.YamlValidation,
    responses={400: {"model": wire.YamlValidation}, 413: {"model": wire.YamlValidation}},
)
def validate_yaml(body: dict[str, Any] = Body(...)) -> JSONResponse:
    """Called for README.md before a commit; the client reads the JSON whatever the status
    (its `errors`: the Hub's shape for this one route)."""
    bodies.check(bodies.ValidateYaml, body)
    content = body.get("content")
    if body.get("repoType", "space") != "space" or not isinstance(content, str):
        return _yaml_answer()
    # Anyone may call this: YAML costs CPU by the key (a 256 KiB block took seconds), so
    # the front matter is measured before it is parsed.
    most = get_settings().max_readme_front_matter_bytes
    if len(_front_matter(content)) > most:
        message = (
            f"the README's front matter is over {most} bytes "
            "(SPACEPORT_MAX_README_FRONT_MATTER_BYTES): keep long text below the closing ---"
        )
        return _yaml_answer(message, 413)
    # As lenient as a git push, which takes any README: settings the Space can't run with
    # are its CONFIG_ERROR after the commit, said there; only YAML that isn't settings is
    # refused here.
    try:
        check_front_matter_yaml(content)
    except SpaceConfigError as exc:
        return _yaml_answer(str(exc), 400)
    return _yaml_answer()


def _front_matter(content: str) -> str:
    """The text from the opening `---` to the closing one (or to the end), unparsed."""
    head = content.lstrip("\ufeff \t\r\n")
    if not head.startswith("---"):
        return ""
    end = head.find("\n---", 3)
    return head if end == -1 else head[:end]


def _writable(
    session: Session, principal: Principal | None, owner: str, name: str
) -> tuple[Space, Principal]:
    caller = require_principal(principal)
    return visible_space(session, caller, owner, name, need=Access.WRITE), caller


def _branch(space: Space, rev: str) -> tuple[Path, str, str | None]:
    """(repo, ref, head) for a commit to `rev`, which must be a branch. A missing `main` is
    fine (the first commit of an empty repo); another missing branch is not."""
    ref = repo_tree.branch_ref(rev)
    if ref is None:
        raise HubError(400, f"Commits go to a branch; {rev!r} is not a branch name")
    repo = repos.repo_path(space.owner, space.name)
    head = repos.resolve(repo, ref)
    if head is None and ref != repos.DEPLOY_REF:
        raise HubError(404, f"Invalid rev id: {rev} (no such branch)", "RevisionNotFound")
    return repo, ref, head


@router.post("/spaces/{owner}/{name}/preupload/{rev:path}", response_model=wire.Preupload)
def preupload(
    owner: str,
    name: str,
    rev: str,
    body: dict[str, Any] = Body(...),
    create_pr: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Preupload:
    bodies.check(bodies.Preupload, body)
    # A pull request (create_pr=1, or refs/pr/N) takes readers too (community.pull_requests).
    if pr := pr_commits.commit_target(session, principal, owner, name, rev, create_pr):
        space, repo, head = pr.space, pr.repo, pr.head
    else:
        space, _ = _writable(session, principal, owner, name)
        repo, _, head = _branch(space, rev)
    files = [f for f in body.get("files") or [] if isinstance(f, dict)]
    paths = [f["path"] for f in files if isinstance(f.get("path"), str)]
    tracked = repo_commit.lfs_tracked(repo, head, paths)
    remote = _remote_oids(space, session, repo, head, paths)
    ignored = _ignored(repo, head, body.get("gitIgnore"), paths)
    answers = []
    for item in files:
        path, size = item.get("path"), item.get("size")
        big = isinstance(size, int) and size > LFS_THRESHOLD
        answers.append(
            wire.PreuploadFile(
                path=path,
                upload_mode="lfs" if big or path in tracked else "regular",
                should_ignore=path in ignored,
                oid=remote.get(path) if isinstance(path, str) else None,
            )
        )
    return wire.Preupload(files=answers)


def _ignored(repo: Path, head: str | None, sent: str | None, paths: list[str]) -> set[str]:
    """The paths the commit's .gitignore excludes, as the Hub decides `shouldIgnore`: the
    one the client sends (from the commit), else the branch's own root .gitignore."""
    if sent is None and head is not None:
        stored = repos.read_file(repo, head, ".gitignore")
        sent = stored.decode(errors="replace") if stored is not None else None
    return gitignore.ignored(sent, paths) if sent else set()


def _remote_oids(
    space: Space, session: Session, repo: Path, head: str | None, paths: list[str]
) -> dict[str, str]:
    """What the client compares its files with to skip unchanged ones: the git blob id, or
    the sha256 for an LFS file whose object is here."""
    if head is None:
        return {}
    entries = [e for e in repo_tree.path_entries(repo, head, paths) if e.kind == "blob"]
    pointers = repo_tree.pointers(repo, entries)
    lfs_paths = servable(space, session, pointers)
    return {e.path: pointers[e.path][0] if e.path in lfs_paths else e.oid for e in entries}


async def ndjson_body(request: Request) -> IO[bytes]:
    """The commit body, spooled to disk as it arrives (it carries whole files, base64)."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - closed by handler
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)
    return spool


@router.post("/spaces/{owner}/{name}/commit/{rev:path}", response_model=wire.CommitAnswer)
def commit(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    create_pr: str | None = None,
    # Before the body: a bad token is refused before any upload is spooled.
    principal: Principal | None = Depends(current_principal),
    session: Session = Depends(get_session),
    body: IO[bytes] = Depends(ndjson_body),
) -> wire.CommitAnswer:
    # create_pr=1 opens a pull request and commits to it; refs/pr/N adds to one. Neither
    # deploys (community.pull_requests); readers may, as on the Hub.
    pr = pr_commits.commit_target(session, principal, owner, name, rev, create_pr)
    if pr is not None:
        space, caller, repo, head = pr.space, pr.caller, pr.repo, pr.head
        ref = pr.ref if pr.discussion is not None else ""
    else:
        space, caller = _writable(session, principal, owner, name)
        repo, ref, head = _branch(space, rev)
    incoming = body.seek(0, 2)
    body.seek(0)
    check_space_room(session, space, incoming)
    if ref == repos.DEPLOY_REF:
        check_build_room(session, space)
    with body, tempfile.TemporaryDirectory(prefix="spaceport-commit-") as scratch:
        header, operations = _parse(body, Path(scratch))
        _check_lfs(space, session, operations)
        parent = header.get("parentCommit")
        creates_pr = pr is not None and pr.discussion is None  # it starts at parentCommit
        stale = parent and not (head and len(parent) >= 7 and head.startswith(parent))
        if stale and not creates_pr:
            raise HubError(
                412,
                f"parentCommit {parent} is not the head of {rev} (which is {head}): "
                "someone committed in between; start again from the new head",
            )
        summary = str(header.get("summary") or "").strip() or "Upload files with the API"
        description = str(header.get("description") or "").strip()
        message = summary + (f"\n\n{description}" if description else "") + "\n"
        author = repos.identity(caller.user.name)
        lfs.disable_repo_filters(repo)
        try:
            if pr is not None:
                pr_commits.begin(pr, session, summary, description or summary, parent)
                ref, head = pr.ref, pr.head
            sha = repo_commit.create_commit(repo, ref, head, operations, message, author)
        except CommitError as exc:
            if pr is not None:
                pr_commits.abort(pr, session)
            raise HubError(exc.status, str(exc), exc.code) from exc
        except BaseException:
            if pr is not None:
                pr_commits.abort(pr, session)
            raise
    if pr is not None:
        pr_commits.finish(pr, session, sha)
    elif ref == repos.DEPLOY_REF:
        deploy_commit(session, space, sha, actor=caller.user.name)  # as a push to main
    return wire.CommitAnswer(
        success=True,
        commit_oid=sha,
        commit_url=f"{origin(request)}/spaces/{space.owner}/{space.name}/commit/{sha}",
        commit_message=summary,
        hook_output="",
        pull_request_url=pr.url(origin(request)) if pr is not None else None,
    )


def _parse(body: IO[bytes], scratch: Path) -> tuple[dict[str, Any], list[Operation]]:
    """The header and the operations of an NDJSON commit; file contents go to `scratch`."""
    header: dict[str, Any] | None = None
    operations: list[Operation] = []
    for number, line in enumerate(body, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if not isinstance(value, dict):
                raise TypeError("value must be an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise HubError(400, f"commit line {number}: not a commit operation ({exc})") from exc
        if key == "header":
            header = value
        elif len(operations) >= (most := get_settings().max_commit_files):
            raise HubError(
                413,
                f"More than {most} files in one commit (SPACEPORT_MAX_COMMIT_FILES): "
                "split it into several commits",
                TOO_LARGE,
            )
        else:
            operations.append(_operation(key, value, scratch / str(number), number))
    if header is None:
        raise HubError(400, "the commit has no header line (summary, description)")
    # No operations is an empty commit, as on the Hub: what the client sends when the
    # .gitignore excludes every file of an upload.
    return header, operations


def _operation(key: str, value: dict[str, Any], scratch: Path, number: int) -> Operation:
    try:
        if key == "file":
            path = repo_commit.clean_path(value.get("path"))
            scratch.write_bytes(_content(value))
            return AddFile(path, scratch)
        if key == "lfsFile":
            oid = value.get("oid")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                raise CommitError(400, "lfsFile needs a sha256 oid")
            size = value.get("size")
            return AddLfs(
                repo_commit.clean_path(value.get("path")), oid, -1 if size is None else size
            )
        if key in ("deletedFile", "deletedFolder"):
            folder = key == "deletedFolder"
            return Delete(repo_commit.clean_path(value.get("path"), folder=folder), folder)
    except CommitError as exc:
        raise HubError(exc.status, f"commit line {number}: {exc}", exc.code) from exc
    raise HubError(400, f"commit line {number}: unknown operation {key!r}")


def _content(value: dict[str, Any]) -> bytes:
    content = value.get("content")
    if not isinstance(content, str):
        raise CommitError(400, "file needs a content string")
    if value.get("encoding", "base64") == "utf-8":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error as exc:
        raise CommitError(400, f"content is not valid base64: {exc}") from exc


def _check_lfs(space: Space, session: Session, operations: list[Operation]) -> None:
    """Every LFS file must name an object uploaded to this Space (through the batch API).
    Its size may be left out: server-side copies of LFS files send only the oid."""
    assert space.id is not None
    wanted = [op for op in operations if isinstance(op, AddLfs)]
    have = lfs.recorded(session, space.id, [op.oid for op in wanted if lfs.valid_oid(op.oid)])
    for index, op in enumerate(operations):
        if not isinstance(op, AddLfs):
            continue
        size = have.get(op.oid)
        if size is None or not lfs.has_object(op.oid, size) or op.size not in (-1, size):
            raise HubError(
                422,
                f"{op.path}: LFS object {op.oid} (size {op.size}) was not uploaded to "
                f"{space.full_name}; upload it through the LFS batch API first",
            )
        operations[index] = AddLfs(op.path, op.oid, size)


@router.get("/spaces/{owner}/{name}/xet-write-token/{rev:path}")
@router.get("/spaces/{owner}/{name}/xet-read-token/{rev:path}")
def xet_token(owner: str, name: str, rev: str) -> JSONResponse:
    """huggingface_hub with hf_xet asks here before uploading an LFS-mode file. Say why it
    can't, in words its error shows."""
    return error_response(501, XET_UNSUPPORTED)
