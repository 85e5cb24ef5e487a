"""Every JSON answer of the API, typed: the Hub's wire shapes in one module.

huggingface_hub, gradio_client and git-lfs parse these, so field names (camelCase, as on
the Hub) and values are exactly what those clients read; the routes declare them as
`response_model`, so /openapi.json describes what the server really sends. A field made
with `omitted()` is left out of the JSON when it has no value (the Hub leaves those out: a
tree entry's `lfs`, a tier's `accelerator`); every other field is always sent, null
included (huggingface_hub reads `errorMessage: null`).

One error shape for every route (`ErrorBody`, with X-Error-Code / X-Error-Message headers:
orchestrator/api/errors.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class Wire(BaseModel):
    """A JSON answer: built with Python names, sent with the Hub's (aliases)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


def omitted(alias: str | None = None) -> Any:
    """A field the JSON leaves out when it has no value (the Hub does)."""
    return Field(default=None, alias=alias, exclude_if=lambda value: value is None)


# -- errors ------------------------------------------------------------------------------


class ErrorBody(Wire):
    """Every refusal: huggingface_hub appends `error` to its exception's message."""

    error: str
    url: str | None = omitted()  # a 409 on create/duplicate: where the existing Space is
    message: str | None = omitted()  # the LFS batch API's errors: git-lfs prints `message`
    # The sign-in provider's token endpoint (api/oauth.py): RFC 6749 puts a code in `error`
    # and the words in `error_description`, which authlib reads.
    error_description: str | None = omitted()


class YamlProblem(Wire):
    message: str


class YamlValidation(Wire):
    """validate-yaml: read by the client whatever the status."""

    errors: list[YamlProblem] = []
    warnings: list[YamlProblem] = []


# -- Spaces ------------------------------------------------------------------------------


class RuntimeHardware(Wire):
    current: str | None
    requested: str | None


class Replicas(Wire):
    current: int
    requested: int


class Domain(Wire):
    domain: str
    stage: str


class HardwareQueue(Wire):
    """Spaceport's own: where a Space stands in the line for its tier (1 is next)."""

    position: int
    hardware: str
    since: str | None  # when it began waiting: the line is first come, first served


class SleepState(Wire):
    """Spaceport's own: how a Space sleeps for want of visitors (orchestrator/controller/
    sleep.py): "light" (frozen: a visit wakes it in milliseconds) or "deep" (stopped: a
    visit starts it again), and since when."""

    depth: str
    since: str | None


class Volume(Wire):
    """huggingface_hub's Volume: what a Space mounts (orchestrator/volumes/spec.py)."""

    type: str
    source: str
    mount_path: str = Field(alias="mountPath")
    revision: str | None = omitted()
    read_only: bool = Field(alias="readOnly")
    path: str | None = omitted()


class BucketInfo(Wire):
    """huggingface_hub's BucketInfo (bucket_info, list_buckets). `size` is the bytes the
    controller last measured on the backend (0 until measured; Kubernetes: never); Spaceport
    does not count the files (totalFiles is 0). Spaceport's own fields, which the client
    keeps as attributes: the quota (SPACEPORT_BUCKET_SIZE_GIB, bytes), when the size was
    measured, and whether it is over (Spaces mounting it get it read-only at their next
    start)."""

    id: str
    private: bool
    created_at: str = Field(alias="createdAt")
    size: int = 0
    total_files: int = Field(default=0, alias="totalFiles")
    size_quota: int = Field(default=0, alias="sizeQuota")
    size_measured_at: str | None = Field(default=None, alias="sizeMeasuredAt")
    over_quota: bool = Field(default=False, alias="overQuota")


class BucketCreated(Wire):
    """create_bucket's answer: the bucket's URL (BucketUrl parses owner/name from it)."""

    url: str
    id: str


class SpaceRuntime(Wire):
    """huggingface_hub's SpaceRuntime. `hardware` is always an object: the client
    dereferences it."""

    stage: str
    hardware: RuntimeHardware
    error_message: str | None = Field(alias="errorMessage")
    sha: str | None
    gc_timeout: int | None = Field(alias="gcTimeout")
    replicas: Replicas
    dev_mode: bool = Field(alias="devMode")
    domains: list[Domain]
    # Spaceport's own field (the Hub's are untouched): what the running image differs in from
    # the Hub, e.g. a base image or Python version Spaceport substituted (docs/hub-api.md).
    build_notes: list[str] = Field(default_factory=list, alias="buildNotes")
    # Spaceport's own, left out unless it waits for hardware (errorMessage says why in words).
    queue: HardwareQueue | None = omitted()
    # Spaceport's own, left out while awake: which sleep it is in (stage SLEEPING or STOPPED).
    sleep: SleepState | None = omitted()
    # The Hub's: what the Space mounts; left out without volumes (the client reads None).
    volumes: list[Volume] | None = omitted()
    # Spaceport's own, left out unless billing moved it to cpu-basic at zero credit: why,
    # and what to do (orchestrator/billing/fallback.py).
    hardware_notice: str | None = omitted("hardwareNotice")
    # Spaceport's own, left out unless a bucket it mounts is over its size quota: which,
    # that it is read-only from the next start, and what to do (orchestrator/volumes/mounts.py).
    volume_notice: str | None = omitted("volumeNotice")
    # Spaceport's own, left out unless the owner set it: visitors let in at once before the
    # rest wait in the visitor queue (else the tier's concurrency).
    visitor_concurrency: int | None = omitted("visitorConcurrency")


class SpaceInfo(Wire):
    """huggingface_hub's SpaceInfo (space_info, list_spaces)."""

    uid: str = Field(alias="_id")  # the Hub's 24-hex id, never reused (`id` is owner/name)
    id: str
    author: str
    sha: str | None
    created_at: str | None = Field(alias="createdAt")
    last_modified: str | None = Field(alias="lastModified")
    private: bool
    gated: bool
    disabled: bool
    host: str
    subdomain: str
    sdk: str | None
    likes: int
    tags: list[str]
    card_data: dict[str, Any] = Field(alias="cardData")
    duplicated_from: str | None = Field(alias="duplicatedFrom")
    runtime: SpaceRuntime


class SiblingLfs(Wire):
    size: int
    sha256: str
    pointer_size: int = Field(alias="pointerSize")


class Sibling(Wire):
    rfilename: str
    size: int | None = omitted()
    blob_id: str | None = omitted("blobId")
    lfs: SiblingLfs | None = omitted()


class SpaceRevision(SpaceInfo):
    """space_info(revision=...): `sha` is the commit the revision names."""

    siblings: list[Sibling]


class SpaceDetails(SpaceInfo):
    """GET /api/spaces/{id} (and with `expand=`): SpaceInfo with the files of main as
    `siblings` (left out when main has more than SPACEPORT_MAX_TREE_ENTRIES files) and the
    properties only `expand` asks for (each left out unless asked)."""

    siblings: list[Sibling] | None = omitted()
    models: list[str] | None = omitted()
    datasets: list[str] | None = omitted()
    region: str | None = omitted()
    resource_group: dict[str, Any] | None = omitted("resourceGroup")
    trending_score: int | None = omitted("trendingScore")
    used_storage: int | None = omitted("usedStorage")
    xet_enabled: bool | None = omitted("xetEnabled")


class BuildInfo(Wire):
    id: int | None
    commit: str
    status: str
    image: str | None
    reused_image: bool = Field(alias="reusedImage")
    error_message: str | None = Field(alias="errorMessage")
    created_at: str | None = Field(alias="createdAt")
    started_at: str | None = Field(alias="startedAt")
    finished_at: str | None = Field(alias="finishedAt")
    notes: list[str] = Field(default_factory=list)  # what the image differs in from the Hub


class BuildWithLog(BuildInfo):
    log: list[str]


class HardwareAccelerator(Wire):
    type: str
    model: str
    quantity: str
    vram: str
    manufacturer: str


class HardwareTier(Wire):
    """One item of GET /api/spaces/hardware: display strings, as huggingface_hub reads."""

    name: str
    pretty_name: str = Field(alias="prettyName")
    cpu: str
    ram: str
    accelerator: HardwareAccelerator | None = omitted()
    unit_cost_micro_usd: int = Field(alias="unitCostMicroUSD")
    unit_cost_usd: float = Field(alias="unitCostUSD")
    unit_label: str = Field(alias="unitLabel")


class SecretInfo(Wire):
    """A secret as listed: never its value."""

    description: str | None
    updated_at: str | None = Field(alias="updatedAt")


class VariableInfo(Wire):
    value: str
    description: str | None
    updated_at: str | None = Field(alias="updatedAt")


class Secrets(RootModel[dict[str, SecretInfo]]):
    pass


class Variables(RootModel[dict[str, VariableInfo]]):
    pass


class KeyAnswer(Wire):
    key: str


class SpaceJwt(Wire):
    token: str
    exp: int  # unix time: ask again before


# -- repos -------------------------------------------------------------------------------


class RepoUrl(Wire):
    """create_repo and duplicate_space: huggingface_hub builds a RepoUrl from `url`."""

    url: str
    name: str
    id: str


class SpaceTemplate(Wire):
    """One of GET /api/spaces/templates (huggingface_hub's SpaceTemplate reads all four)."""

    name: str
    repo_id: str = Field(alias="repoId")
    sdk: str
    preferred_private: bool = Field(alias="preferredPrivate")


class SpaceTemplates(Wire):
    templates: list[SpaceTemplate]


class AccessCheck(Wire):
    """auth-check's answer (the client reads only the status): what was granted."""

    access: Literal["read", "write"]


class Deleted(Wire):
    deleted: str


class Moved(Wire):
    moved: str


class AccessToken(Wire):
    display_name: str | None = Field(alias="displayName")
    role: str


class WhoamiAuth(Wire):
    type: str
    access_token: AccessToken = Field(alias="accessToken")


class WhoamiOrg(Wire):
    """One organisation of whoami's `orgs` (the Hub's shape; `roleInOrg` is the user's)."""

    type: Literal["org"] = "org"
    id: str
    name: str
    fullname: str
    email: str | None = None
    can_pay: bool = Field(default=False, alias="canPay")
    period_end: int | None = Field(default=None, alias="periodEnd")
    avatar_url: str = Field(default="", alias="avatarUrl")
    role_in_org: str = Field(alias="roleInOrg")
    is_enterprise: bool = Field(default=False, alias="isEnterprise")


class OrgOverview(Wire):
    """GET /api/organizations/{org}/overview: huggingface_hub's Organization."""

    id: str = Field(alias="_id")
    type: Literal["org"] = "org"
    name: str
    fullname: str
    avatar_url: str = Field(default="", alias="avatarUrl")
    details: str | None = None
    is_verified: bool = Field(default=False, alias="isVerified")
    is_following: bool = Field(default=False, alias="isFollowing")
    num_users: int = Field(alias="numUsers")
    num_models: int = Field(default=0, alias="numModels")
    num_spaces: int = Field(alias="numSpaces")  # those the caller may see
    num_datasets: int = Field(default=0, alias="numDatasets")
    num_followers: int = Field(default=0, alias="numFollowers")
    num_papers: int = Field(default=0, alias="numPapers")


class OrgMemberInfo(Wire):
    """One member of GET /api/organizations/{org}/members (huggingface_hub's User reads
    `user`, `fullname`, `avatarUrl`, `type`); `role` only for the org's members and admins."""

    id: str = Field(alias="_id")
    user: str
    fullname: str
    type: Literal["user"] = "user"
    avatar_url: str = Field(default="", alias="avatarUrl")
    is_pro: bool = Field(default=False, alias="isPro")
    role: str | None = omitted()


class Whoami(Wire):
    type: str
    id: str
    name: str
    fullname: str
    email: str | None
    email_verified: bool = Field(alias="emailVerified")
    can_pay: bool = Field(alias="canPay")
    is_pro: bool = Field(alias="isPro")
    period_end: int | None = Field(alias="periodEnd")
    avatar_url: str = Field(alias="avatarUrl")
    orgs: list[WhoamiOrg]
    auth: WhoamiAuth


class Health(Wire):
    status: str


# -- files and commits -------------------------------------------------------------------


class EntryLfs(Wire):
    oid: str
    size: int
    pointer_size: int = Field(alias="pointerSize")


class LastCommit(Wire):
    id: str
    title: str
    date: str | None


class TreeEntry(Wire):
    """list_repo_tree / get_paths_info: `lfs` only for LFS files, `lastCommit` with expand."""

    type: Literal["file", "directory"]
    oid: str
    size: int
    path: str
    lfs: EntryLfs | None = omitted()
    last_commit: LastCommit | None = omitted("lastCommit")


class PreuploadFile(Wire):
    path: str | None
    upload_mode: Literal["lfs", "regular"] = Field(alias="uploadMode")
    should_ignore: bool = Field(alias="shouldIgnore")
    oid: str | None


class Preupload(Wire):
    files: list[PreuploadFile]


class CommitAnswer(Wire):
    success: bool
    commit_oid: str = Field(alias="commitOid")
    commit_url: str = Field(alias="commitUrl")
    commit_message: str = Field(alias="commitMessage")
    hook_output: str = Field(alias="hookOutput")
    pull_request_url: str | None = Field(alias="pullRequestUrl")


# -- branches, tags and history ----------------------------------------------------------


class GitRef(Wire):
    """One ref of list_repo_refs (GitRefInfo); also the answer of a ref change."""

    name: str
    ref: str
    target_commit: str = Field(alias="targetCommit")


class GitRefs(Wire):
    """list_repo_refs: `pullRequests` only when asked (`?include_prs=1`)."""

    branches: list[GitRef]
    converts: list[GitRef]
    tags: list[GitRef]
    pull_requests: list[GitRef] | None = omitted("pullRequests")


class CommitAuthor(Wire):
    user: str
    avatar: str | None = omitted()


class CommitFormatted(Wire):
    """`expand[]=formatted`: title and message as HTML."""

    title: str
    message: str


class GitCommit(Wire):
    """One commit of list_repo_commits (GitCommitInfo), newest first."""

    id: str
    authors: list[CommitAuthor]
    date: str
    title: str
    message: str
    formatted: CommitFormatted | None = omitted()


# -- the Git LFS batch API ---------------------------------------------------------------


class LfsAction(Wire):
    href: str
    expires_in: int


class LfsObjectError(Wire):
    code: int
    message: str


class LfsObject(Wire):
    """One object of a batch answer: actions to take, none (already here) or an error."""

    oid: Any  # echoed as sent, even when it is not a valid oid
    size: Any
    authenticated: bool | None = omitted()
    actions: dict[str, LfsAction] | None = omitted()
    error: LfsObjectError | None = omitted()


class LfsBatch(Wire):
    transfer: str = "basic"
    objects: list[LfsObject]
    hash_algo: str = "sha256"


# -- the visitor queue (the gateway's GET /.spaceport/queue on a Space's host) ----------


class VisitorPlace(Wire):
    """A visitor's place in a Space's visitor queue (orchestrator/gateway/visitor_admission.py),
    as its waiting page reads it; also the page's own figures, in words."""

    admitted: bool  # holds a slot (the Space may still be starting: see `ready`)
    ready: bool  # the Space serves visitors now: an admitted visitor may go in
    full: bool  # the line is at its depth: no place was given
    position: int | None  # 1 = next; None when admitted or full
    waiting: int  # visitors in line in all
    # building | waiting_hardware | starting | waking | busy | full | ready, or stopped
    # (paused, failed: the page reloads to show why)
    doing: str
    message: str  # what the Space is doing, in plain words
    estimated_wait_seconds: float | None = Field(alias="estimatedWaitSeconds")
    retry_after: int = Field(alias="retryAfter")  # seconds before asking again
    place_text: str = Field(alias="placeText")
    place_label: str = Field(alias="placeLabel")
    wait_text: str = Field(alias="waitText")


# -- the event log -----------------------------------------------------------------------


class Event(Wire):
    """One entry of the event log (docs/events.md lists every kind and its data)."""

    id: int
    at: str | None
    kind: str
    actor: str
    space: str | None  # owner/name when it happened
    space_id: str | None = Field(alias="spaceId")  # the Space's uid, stable across renames
    data: dict[str, Any]


class EventPage(Wire):
    """A page of events, oldest first. `cursor` is the newest id this page read: pass it
    as `?after=` for the next page (an empty page returns the same cursor)."""

    events: list[Event]
    cursor: int


# -- discussions, pull requests and likes (huggingface_hub/community.py) -----------------


class DiscussionAuthor(Wire):
    """`author` of a discussion or event; left out when the user was deleted (the client
    then shows "deleted")."""

    name: str
    type: Literal["user"] = "user"
    fullname: str
    avatar_url: str | None = Field(default=None, alias="avatarUrl")
    is_owner: bool = Field(default=False, alias="isOwner")


class DiscussionRepo(Wire):
    name: str
    type: Literal["space"] = "space"


class DiscussionEvent(Wire):
    id: str
    type: str
    created_at: str = Field(alias="createdAt")
    author: DiscussionAuthor | None = omitted()
    data: dict[str, Any]


class DiscussionSummary(Wire):
    """One discussion of get_repo_discussions' pages."""

    num: int
    title: str
    status: str
    created_at: str = Field(alias="createdAt")
    author: DiscussionAuthor | None = omitted()
    repo: DiscussionRepo
    is_pull_request: bool = Field(alias="isPullRequest")
    num_comments: int = Field(alias="numComments")
    pinned: bool
    top_reactions: list[dict[str, Any]] = Field(default=[], alias="topReactions")


class DiscussionPage(Wire):
    """get_repo_discussions reads `count`, `start` and `discussions` (pages of 50, `?p=`)."""

    discussions: list[DiscussionSummary]
    count: int
    start: int
    num_closed_discussions: int = Field(alias="numClosedDiscussions")


class PullRequestChanges(Wire):
    base: str
    head_sha: str | None = omitted("headSha")
    merge_commit_id: str | None = omitted("mergeCommitId")


class DiscussionDetails(DiscussionSummary):
    """get_discussion_details: the summary with its events and, for a pull request, the
    changes (target branch, merge commit), conflicting files and diff."""

    events: list[DiscussionEvent]
    locked: bool = False
    changes: PullRequestChanges | None = omitted()
    files_with_conflicts: list[str] | None = omitted("filesWithConflicts")
    diff: str | None = omitted()
    git_reference: str | None = omitted("gitReference")


class DiscussionCreated(Wire):
    """POST .../discussions: the client reads `num`, then asks the details."""

    num: int
    pull_request: bool = Field(alias="pullRequest")
    url: str
    reference: str | None = omitted()


class NewMessage(Wire):
    new_message: DiscussionEvent = Field(alias="newMessage")


class NewTitle(Wire):
    new_title: DiscussionEvent = Field(alias="newTitle")


class NewStatus(Wire):
    new_status: DiscussionEvent = Field(alias="newStatus")


class UpdatedComment(Wire):
    updated_comment: DiscussionEvent = Field(alias="updatedComment")


class Merged(Wire):
    merged: bool
    merge_commit_id: str = Field(alias="mergeCommitId")
    fast_forward: bool = Field(alias="fastForward")


class LikedRepo(Wire):
    name: str
    type: Literal["space"] = "space"


class Like(Wire):
    """One entry of GET /api/users/{user}/likes (list_liked_repos reads repo.name/type)."""

    created_at: str = Field(alias="createdAt")
    repo: LikedRepo


class Liker(Wire):
    """One entry of GET /api/spaces/{id}/likers (list_repo_likers)."""

    user: str
    fullname: str
    avatar_url: str | None = Field(alias="avatarUrl")
    type: Literal["user"] = "user"


class LikeAnswer(Wire):
    liked: bool
    likes: int


# -- billing (Spaceport's own: the Hub bills through its own website) ----------------------


class CreditBalance(Wire):
    """GET /api/billing/balance, POST /api/billing/grants: an account's credit."""

    account: str
    kind: Literal["user", "org"]
    balance_micro_usd: int = Field(alias="balanceMicroUSD")
    balance: str  # the same in words, "$1.25"


class CreditEntryInfo(Wire):
    """One line of the ledger: a grant, a charge (one Space, one tier, one uninterrupted
    run: startedAt to endedAt) or a fallback to cpu-basic."""

    id: int
    kind: Literal["grant", "charge", "fallback"]
    at: str | None
    amount_micro_usd: int = Field(alias="amountMicroUSD")
    space: str | None = omitted()
    space_id: str | None = omitted("spaceId")
    hardware: str | None = omitted()
    started_at: str | None = omitted("startedAt")
    ended_at: str | None = omitted("endedAt")
    seconds: float | None = omitted()
    actor: str
    note: str | None = omitted()


class CreditUsage(Wire):
    """GET /api/billing/usage: the ledger, newest first; `next` is the `before` of the
    next page (null on the last)."""

    account: str
    balance_micro_usd: int = Field(alias="balanceMicroUSD")
    entries: list[CreditEntryInfo]
    next: int | None


# -- Sign in with Spaceport (OpenID Connect, orchestrator/oauth/) -------------------------
# These are OAuth's and OpenID Connect's shapes, not the Hub's: authlib (under Gradio's
# LoginButton) reads them by the RFCs' names; their refusals are ErrorBody with
# `error_description`.


class OpenIdConfiguration(Wire):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    response_types_supported: list[str]
    grant_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]


class OAuthTokens(Wire):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    scope: str
    id_token: str
