"""Control-plane state: the tables Spaceport keeps, in SQLModel.

Schema changes go through Alembic (orchestrator/core/migrations): add a revision for every change
here, so an upgrade never loses data.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, String, Text, UniqueConstraint, func
from sqlmodel import Field, SQLModel

from orchestrator.core.secret_store import EncryptedText


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_space_uid() -> str:
    """A Space's public id: 24 hex characters, as on the Hub; random, so never reused."""
    return secrets.token_hex(12)


class TokenRole(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class Visibility(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class Stage(enum.StrEnum):
    """Hugging Face's stage names; the one home of what a Space is doing."""

    NO_APP_FILE = "NO_APP_FILE"
    CONFIG_ERROR = "CONFIG_ERROR"
    BUILDING = "BUILDING"
    BUILD_ERROR = "BUILD_ERROR"
    APP_STARTING = "APP_STARTING"
    RUNNING = "RUNNING"
    RUNNING_BUILDING = "RUNNING_BUILDING"
    RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    DELETING = "DELETING"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"
    SLEEPING = "SLEEPING"


class BuildStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED)


class UserKind(enum.StrEnum):
    """A name is a user's or an organisation's: one namespace, as on the Hub."""

    USER = "user"
    ORG = "org"


class OrgRole(enum.StrEnum):
    """A member's role in an organisation, the Hub's four (docs: organizations-security)."""

    READ = "read"  # sees the org's private Spaces and clones them
    CONTRIBUTOR = "contributor"  # creates Spaces in the org, writes to the ones they created
    WRITE = "write"  # writes to every Space of the org
    ADMIN = "admin"  # write, and manages the members


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=96)
    # An organisation is a row here too, so Space.owner_id points at whoever owns the
    # namespace, user or org; an org never has tokens and never signs in.
    kind: UserKind = Field(
        default=UserKind.USER, sa_type=String(8), sa_column_kwargs={"server_default": "user"}
    )
    fullname: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def is_org(self) -> bool:
        return self.kind == UserKind.ORG


class OrgMember(SQLModel, table=True):
    """A user's role in an organisation (orchestrator/core/organizations.py)."""

    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    role: OrgRole = Field(default=OrgRole.READ, sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow)


# User names are unique regardless of case, as on the Hub: "Alice" can't sit beside "alice"
# (and take over her Space hosts).
Index("ix_user_name_lower", func.lower(User.name), unique=True)  # type: ignore[arg-type]


class ApiToken(SQLModel, table=True):
    """A token is shown once, at creation; only its SHA-256 is kept."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    display_name: str = Field(default="token", max_length=96)
    role: TokenRole = Field(default=TokenRole.WRITE, sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow)
    # Tokens people make never expire; those a Space's sign-in hands out do (orchestrator/oauth/).
    expires_at: datetime | None = Field(default=None)


class UserPassword(SQLModel, table=True):
    """A user's password for the web pages' sign-in (core/web_sessions.py): an argon2id hash,
    in its own table so nothing made from a User row can carry it."""

    user_id: int = Field(foreign_key="user.id", primary_key=True, ondelete="CASCADE")
    password_hash: str = Field(max_length=256)
    changed_at: datetime = Field(default_factory=utcnow)


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random value; only its SHA-256 is kept, as for
    tokens. `csrf_token` goes into the pages' forms and scripts' requests."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(index=True, unique=True, max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class ExternalIdentity(SQLModel, table=True):
    """Who a user is at the external OpenID Connect provider of the pages' sign-in
    (core/external_sign_in.py): its issuer and subject id, linked once, at the first
    sign-in, so a later one finds the same user whatever name the provider says then."""

    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=2048)
    subject: str = Field(max_length=255)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class OAuthCode(SQLModel, table=True):
    """An authorization code of "Sign in with Spaceport" (orchestrator/oauth/): given to a
    Space's browser redirect, traded once by the Space's server for tokens. Only its SHA-256
    is kept; `redeemed_at` is set by the one conditional update that trades it."""

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(index=True, unique=True, max_length=64)
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    redirect_uri: str = Field(max_length=2048)
    scope: str = Field(max_length=1024)
    nonce: str | None = Field(default=None, max_length=256)
    code_challenge: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    redeemed_at: datetime | None = Field(default=None)


class Space(SQLModel, table=True):
    # AUTOINCREMENT: SQLite would otherwise hand a deleted Space's id to the next one.
    __table_args__ = (UniqueConstraint("owner", "name"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True)
    # The id the Hub API shows, and the key of everything a Space leaves outside the
    # database (container labels, run logs): never reused, unlike a row number could be.
    uid: str = Field(default_factory=new_space_uid, max_length=24, unique=True, index=True)
    # The DNS label the Space is served under (orchestrator/core/hostnames.py): stored and unique.
    host: str = Field(max_length=63, unique=True, index=True)
    owner: str = Field(index=True, max_length=96)
    name: str = Field(max_length=96)
    owner_id: int = Field(foreign_key="user.id")
    # The user who created it: in an organisation, a contributor writes to the Spaces they
    # created only. A plain id (users are never deleted), None for Spaces from before.
    creator_id: int | None = Field(default=None)
    sdk: str | None = Field(default=None, max_length=32)
    visibility: Visibility = Field(default=Visibility.PUBLIC, sa_type=String(16))
    requested_hardware: str = Field(default="cpu-basic", max_length=64)
    current_hardware: str | None = Field(default=None, max_length=64)
    sleep_time_seconds: int | None = Field(default=None)
    # The owner's visitors admitted at once (spec; orchestrator/gateway/visitor_queue.py);
    # None: the tier's concurrency.
    visitor_concurrency: int | None = Field(default=None)
    # Stored as text, not a database enum, so a new stage needs no type migration.
    stage: Stage = Field(default=Stage.NO_APP_FILE, sa_type=String(32))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    # Three commits tell where a Space is on its way from a push to serving visitors:
    # head (newest on main) -> built (newest with an image) -> serving (answering now).
    head_sha: str | None = Field(default=None, max_length=40)
    built_sha: str | None = Field(default=None, max_length=40)
    built_image: str | None = Field(default=None, max_length=255)
    # What the built image differs in from the Hub (Build.notes of the build that made it).
    built_notes: str | None = Field(default=None, sa_column=Column(Text))
    serving_sha: str | None = Field(default=None, max_length=40)
    serving_image: str | None = Field(default=None, max_length=255)
    # Where the gateway sends visitors (the serving instance's base URL).
    serving_address: str | None = Field(default=None, max_length=255)
    # Run settings of the built commit, from its README.
    app_port: int = Field(default=7860)
    startup_timeout_seconds: int = Field(default=1800)
    # The revision that crashed or never became healthy; not retried until something changes.
    failed_revision: str | None = Field(default=None, max_length=64)
    # Bumped by each restart, so the reconciler replaces an otherwise unchanged container.
    restart_count: int = Field(default=0)
    # Waiting for room on a tier (status; orchestrator/controller/waiting_line.py): which tier,
    # since when (the line's order, first come first served) and its place in that tier's
    # line. All None while it does not wait.
    waiting_hardware: str | None = Field(default=None, max_length=64)
    waiting_since: datetime | None = Field(default=None, index=True)
    waiting_position: int | None = Field(default=None)
    # Asleep for want of visitors (status; orchestrator/controller/sleep.py): "light" (its
    # instance frozen, memory kept) or "deep" (stopped), and since when; None while awake.
    sleep_depth: str | None = Field(default=None, max_length=8)
    sleep_since: datetime | None = Field(default=None)
    # Why a bucket it mounts is mounted read-only from its next start (status: the controller
    # writes it from its buckets' measured sizes, orchestrator/volumes/mounts.py); None when
    # every bucket is within its quota.
    volume_notice: str | None = Field(default=None, sa_column=Column(Text))
    card_data: str | None = Field(default=None, sa_column=Column(Text))
    duplicated_from: str | None = Field(default=None, max_length=200)
    # The owner's volumes (spec), a JSON list in the Hub's wire shape
    # (orchestrator/volumes/spec.py); None without any.
    volumes: str | None = Field(default=None, sa_column=Column(Text))
    # Why the requested hardware is not what the owner last asked for (spec, written with it:
    # billing's fallback to cpu-basic at zero credit, orchestrator/billing/fallback.py);
    # shown in the runtime, cleared by the owner's next hardware request.
    hardware_notice: str | None = Field(default=None, sa_column=Column(Text))
    # Why the head commit can't be built, as JSON {"stage": ..., "message": ...}
    # (CONFIG_ERROR, NO_APP_FILE): the pipeline writes it, the controller shows it as the stage.
    head_problem: str | None = Field(default=None, sa_column=Column(Text))
    # Conditional writes (orchestrator/core/status.py): every write of the spec (what the
    # owner and pipeline ask for) bumps spec_version, every write of the status (what the
    # controller observes) bumps status_version, and both writes name the version they read.
    spec_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    status_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The spec version the status was last observed for (Kubernetes' observedGeneration).
    observed_spec_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The owner's pause (spec); the controller shows it as the stage PAUSED.
    paused: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def private(self) -> bool:
        return self.visibility == Visibility.PRIVATE


class Build(SQLModel, table=True):
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: int | None = Field(default=None, primary_key=True)
    space_id: int = Field(foreign_key="space.id", index=True)
    commit_sha: str = Field(max_length=40)
    status: BuildStatus = Field(default=BuildStatus.QUEUED, sa_type=String(16), index=True)
    image: str | None = Field(default=None, max_length=255)
    # True when an image for the same tree and config already existed: nothing was built.
    reused_image: bool = Field(default=False)
    no_cache: bool = Field(default=False)
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    # The commit's README config (spaces.config.SpaceConfig as JSON), parsed once at deploy
    # and carried to the worker, which reads nothing of the commit but its archive.
    config: str | None = Field(default=None, sa_column=Column(Text))
    # What the build differs in from the Hub (a substituted base image or Python version), as
    # a JSON list of sentences: builder BuildOutput.notes.
    notes: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Which worker runs it and when it last said so: a build whose worker stopped beating
    # is failed by the housekeeping instead of staying "running".
    worker: str | None = Field(default=None, max_length=200)
    heartbeat_at: datetime | None = None


class BuildLogLine(SQLModel, table=True):
    """One line of a build's log, stored as it happens so it can be followed live."""

    id: int | None = Field(default=None, primary_key=True)
    build_id: int = Field(foreign_key="build.id", index=True)
    line: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Secret(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("space_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    space_id: int = Field(foreign_key="space.id", index=True)
    key: str = Field(max_length=128)
    # Encrypted at rest (orchestrator/core/secret_store.py); reads and writes see plain text.
    value: str = Field(sa_column=Column(EncryptedText, nullable=False))
    description: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow)


class Variable(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("space_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    space_id: int = Field(foreign_key="space.id", index=True)
    key: str = Field(max_length=128)
    value: str = Field(sa_column=Column(Text, nullable=False))
    description: str | None = Field(default=None, max_length=500)
    updated_at: datetime = Field(default_factory=utcnow)


class LfsObject(SQLModel, table=True):
    """An LFS object a Space may serve (the bytes are in orchestrator/repos/lfs.py's store, shared
    by all Spaces): recorded when it is uploaded to the Space, copied when it is duplicated."""

    __table_args__ = (UniqueConstraint("space_id", "oid"),)

    id: int | None = Field(default=None, primary_key=True)
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    oid: str = Field(max_length=64)
    size: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow)


# Space ids are compared regardless of case, as on the Hub: "alice/Demo" is "alice/demo"
# (registry.get_space), so two Spaces can't differ only in case (migration 0008).
Index(
    "ix_space_owner_name_lower",
    func.lower(Space.owner),  # type: ignore[arg-type]
    func.lower(Space.name),  # type: ignore[arg-type]
    unique=True,
)


class SpaceNameAlias(SQLModel, table=True):
    """An id a Space had before move_repo: its API and git URLs redirect to the Space's
    current id (orchestrator/api/renames.py) until another Space takes the name; deleted
    with the Space. Compared regardless of case, like Space ids."""

    id: int | None = Field(default=None, primary_key=True)
    owner: str = Field(max_length=96)
    name: str = Field(max_length=96)
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


Index(
    "ix_spacenamealias_lower",
    func.lower(SpaceNameAlias.owner),  # type: ignore[arg-type]
    func.lower(SpaceNameAlias.name),  # type: ignore[arg-type]
    unique=True,
)


class SpaceHostAlias(SQLModel, table=True):
    """A host label a Space had before a rename: it redirects to the current one, and no
    other Space may take it."""

    host: str = Field(primary_key=True, max_length=63)
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """One transition, appended and never changed (orchestrator/core/events.py): the history
    that billing, wait estimates, the activity feed and audits read, and the change feed the
    controller and the gateways wake on. No foreign key to the Space: a deleted Space's
    history stays, and so does the name it had when each event happened."""

    __table_args__ = (
        Index("ix_event_space_id_id", "space_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    kind: str = Field(max_length=48, index=True)
    space_id: int | None = Field(default=None)
    space_uid: str | None = Field(default=None, max_length=24)
    space_name: str | None = Field(default=None, max_length=200)
    # Who did it: a user name, or one of the platform's own actors (events.ACTOR_*).
    actor: str = Field(max_length=96)
    # The event's facts as a JSON object; never a secret's value.
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False))


# -- community: discussions, pull requests, likes (migration 0010) ----------------------


class DiscussionStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    MERGED = "merged"  # pull requests only
    DRAFT = "draft"  # pull requests only: opened with create_pull_request, nothing merged yet


class DiscussionEventKind(enum.StrEnum):
    """The Hub's event types, as huggingface_hub's community.deserialize_event reads them."""

    COMMENT = "comment"
    STATUS_CHANGE = "status-change"
    TITLE_CHANGE = "title-change"
    COMMIT = "commit"


def new_event_uid() -> str:
    """An event's public id: 24 lowercase hex characters, like the Hub's (the client lower-
    cases comment ids before it puts them in a URL)."""
    return secrets.token_hex(12)


class Discussion(SQLModel, table=True):
    """A discussion or pull request of a Space. `num` counts both, per Space, from 1, as on
    the Hub; a pull request's commits are the git ref refs/pr/{num} in the Space's repo."""

    __table_args__ = (UniqueConstraint("space_id", "num"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True)
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    num: int
    title: str = Field(max_length=500)
    author_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    is_pull_request: bool = Field(default=False)
    status: DiscussionStatus = Field(default=DiscussionStatus.OPEN, sa_type=String(16))
    target_branch: str = Field(default="refs/heads/main", max_length=255)
    merge_commit: str | None = Field(default=None, max_length=40)
    pinned: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class DiscussionEvent(SQLModel, table=True):
    """One entry of a discussion's timeline. A comment keeps its latest text in `content`
    and its earlier versions in `data` (JSON); the other kinds keep their facts in `data`
    (status; from/to; oid/subject)."""

    __table_args__ = ({"sqlite_autoincrement": True},)

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_event_uid, max_length=24, unique=True, index=True)
    discussion_id: int = Field(foreign_key="discussion.id", index=True, ondelete="CASCADE")
    kind: DiscussionEventKind = Field(sa_type=String(32))
    author_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    content: str | None = Field(default=None, sa_column=Column(Text))
    data: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    edited: bool = Field(default=False)
    hidden: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SpaceLike(SQLModel, table=True):
    """A user's like of a Space: one per user and Space."""

    __table_args__ = (UniqueConstraint("user_id", "space_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    space_id: int = Field(foreign_key="space.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Bucket(SQLModel, table=True):
    """A writable bucket (the Hub's buckets API), owned by a user or an organisation: the
    data a Space's `bucket` volume mounts. `uid` names its data on the backend (a Docker
    volume, a PersistentVolumeClaim), so a renamed owner or a moved Space keeps it."""

    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_space_uid, max_length=24, unique=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=96)
    private: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    # What its files take on the backend, and when that was measured: the controller's
    # sweep writes them (orchestrator/controller/volume_sweep.py); None until measured
    # (never, where the backend cannot measure: Kubernetes).
    size_bytes: int | None = Field(default=None, sa_type=BigInteger)
    size_measured_at: datetime | None = Field(default=None)


class SpaceActivity(SQLModel, table=True):
    """The last time a gateway saw a visitor's traffic for a Space (an observation, written
    in batches by orchestrator/gateway/activity.py; the controller reads it to decide sleep).
    Kept apart from the Space row: its writes never touch the spec or status versions."""

    __tablename__ = "space_activity"

    space_id: int = Field(primary_key=True)
    last_seen: datetime = Field(default_factory=utcnow)


# -- billing: credit, the ledger and the meter (orchestrator/billing/, migration 0014) -------


class CreditEntryKind(enum.StrEnum):
    GRANT = "grant"  # an administrator's grant (positive)
    CHARGE = "charge"  # metered use of a paid tier (negative)
    FALLBACK = "fallback"  # a Space moved to cpu-basic at zero credit (amount 0)


class CreditAccount(SQLModel, table=True):
    """A user's or an organisation's credit, in micro-USD (integers: money is never a
    float). Made at the first grant or charge; the balance goes below zero by at most one
    billing period's use before the owner's paid Spaces fall back to cpu-basic."""

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", unique=True)
    balance_micro_usd: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow)


class CreditEntry(SQLModel, table=True):
    """One line of an account's ledger. A charge covers one Space on one tier over
    [started_at, ended_at): consecutive periods of the same run extend it instead of adding
    a row per minute. Space fields are copies, not keys: a deleted Space's charges stay."""

    __table_args__ = (
        Index("ix_creditentry_account_id_id", "account_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="creditaccount.id")
    kind: CreditEntryKind = Field(sa_type=String(16))
    amount_micro_usd: int = Field(default=0, sa_type=BigInteger)  # signed
    space_uid: str | None = Field(default=None, max_length=24)
    space_name: str | None = Field(default=None, max_length=200)
    hardware: str | None = Field(default=None, max_length=64)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float = Field(default=0)
    actor: str = Field(max_length=96)
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class SpaceMeter(SQLModel, table=True):
    """How far one Space has been charged, and what it was doing then (the meter's state,
    JSON: stage, tier, waiting), so each period reads only the events since. `billable`
    marks the rows the charger meters even without new events."""

    space_uid: str = Field(primary_key=True, max_length=24)
    space_name: str = Field(max_length=200)
    owner_id: int | None = Field(default=None)
    metered_until: datetime
    state: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    billable: bool = Field(default=False, index=True)


class BillingCursor(SQLModel, table=True):
    """The charger's place in the event log (one row). `version` is bumped by each period's
    charge in its transaction, with a conditional UPDATE: two chargers (or a retry after a
    crash) never charge the same period twice."""

    id: int = Field(default=1, primary_key=True)
    last_event_id: int = Field(default=0, sa_type=BigInteger)
    version: int = Field(default=0)
    charged_at: datetime = Field(default_factory=utcnow)
