"""Server time of the web pages with 10,000 Spaces and 1,000 users in the database.

    .venv/bin/python -m bench.pages_bench                          # SQLite, 20 requests a page
    .venv/bin/python -m bench.pages_bench --requests 50 --database postgresql
    .venv/bin/python -m bench.pages_bench --users 200 --spaces 2000 --keep-home

A temporary SPACEPORT_HOME (SQLite, or a throwaway PostgreSQL server from tests/services.py),
migrated, seeded in bulk with the rows the real code writes (each built as its model, with
its defaults, then inserted many at a time): `--users` users and 20 organisations,
`--spaces` Spaces owned by them (a few owners with hundreds, most with a handful), with
front matter as a push leaves it in `card_data` (spaces.config.parse_readme of a Hub-style
README), a mix of SDKs, stages, hardware and private ones, the events a Space's life leaves
(created, build queued/started/ended, stage changes, instance started), likes spread over
users and Spaces (most Spaces have none, a few have hundreds; a like's `space.liked` event
with it), and a few discussions (through community/discussions.open_discussion). The Space
whose page is timed has a real repository (its first commit as the Hub makes it) so its
README renders.

Then the real app (orchestrator.app.create_api) in this process through FastAPI's
TestClient: each page is asked `--requests` times after two untimed warm-ups, anonymous and
signed in (a web session of the owner with the most Spaces, a member of three
organisations) where that differs; median and p95 of the wall time around the request,
beside the same figures for a static file (the transport's own cost, the ratio's
reference) and the issue's goal of 200 ms.

Nothing is asserted: timings on a shared machine are read, not tested (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the settings are set first
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from orchestrator.core.models import Event, Space, SpaceLike, User

GOAL_MS = 200.0
ORGS = 20
WORDS = (
    "image", "chat", "vision", "speech", "llm", "demo", "translate", "diffusion", "whisper",
    "detector", "summarizer", "tts", "ocr", "segment", "music", "agent", "rag", "depth",
)  # fmt: skip
SDK_MIX = (("gradio", 55), ("docker", 20), ("static", 15), ("streamlit", 10))
STAGE_MIX = (
    ("RUNNING", 40), ("SLEEPING", 18), ("PAUSED", 8), ("STOPPED", 2), ("BUILD_ERROR", 5),
    ("RUNTIME_ERROR", 5), ("BUILDING", 4), ("APP_STARTING", 3), ("NO_APP_FILE", 10),
    ("CONFIG_ERROR", 2), ("RUNNING_BUILDING", 3),
)  # fmt: skip
HARDWARE_MIX = (("cpu-basic", 85), ("cpu-upgrade", 6), ("t4-small", 4), ("a10g-small", 3),
                ("l4x1", 1), ("a100-large", 1))  # fmt: skip
PRIVATE_SHARE = 0.15
GRADIO = "5.9.1"  # the front matter's sdk_version; nothing is built
APP = b"import gradio as gr\n\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"
# core/events.ACTOR_*, the actors of the events the platform itself records.
CONTROLLER, WORKER, BILLING = "spaceport:controller", "spaceport:worker", "spaceport:billing"
SHORT = ("Try it in the browser", "A small demo", "Fast and free", "", "Made with love")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def weighted(rng: random.Random, mix: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


# --- the home and its database --------------------------------------------------------------


@contextmanager
def bench_home(database: str, keep: bool) -> Iterator[Path]:
    """A fresh SPACEPORT_HOME (and PostgreSQL server) with no other SPACEPORT_ setting."""
    from orchestrator.core import changes, db, secret_store
    from orchestrator.core.settings import get_settings
    from tests import services

    warnings.filterwarnings("ignore", "Skipped unsupported reflection")  # Alembic on SQLite
    home = Path(tempfile.mkdtemp(prefix="spaceport-bench-pages-"))
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            del os.environ[key]
    os.environ["SPACEPORT_HOME"] = str(home)
    stop: Callable[[], None] = lambda: None  # noqa: E731
    if database == "postgresql":
        services.require_postgres()
        url, stop = services.start_postgres(home / "pg")
        os.environ["SPACEPORT_DATABASE_URL"] = url
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    secret_store._fernet.cache_clear()
    changes.reset_feed()
    try:
        db.migrate()
        yield home
    finally:
        db.get_engine().dispose()
        stop()
        if keep:
            say(f"home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def insert_many(session: Session, rows: list[Any], chunk: int = 5000) -> None:
    """Model instances (their defaults filled in as the ORM would) inserted in batches."""
    from sqlalchemy import insert

    if not rows:
        return
    table = type(rows[0]).__table__  # type: ignore[attr-defined]
    for start in range(0, len(rows), chunk):
        values = [r.model_dump(exclude={"id"}) for r in rows[start : start + chunk]]
        session.execute(insert(table), values)
    session.commit()


@dataclass
class Seeded:
    viewer: str  # the owner with the most Spaces, member of three organisations
    target: str  # owner/name of a popular public Space of theirs, with a real repo
    other_space: str  # a popular public Space of someone else
    seconds: float
    counts: dict[str, int]


def readme(rng: random.Random, name: str, sdk: str) -> str:
    from orchestrator.repos import initial_commit

    text = initial_commit.readme(name, sdk, gradio_version=GRADIO, rng=rng)
    short = rng.choice(SHORT)
    if short:
        text = text.replace("pinned: false", f"pinned: false\nshort_description: {short}", 1)
    if rng.random() < 0.3:
        text = text.replace("pinned: false", "pinned: false\nlicense: mit", 1)
    return text


def seed(users: int, spaces: int, rng: random.Random) -> Seeded:
    from sqlmodel import Session

    from orchestrator.core import db

    started = time.perf_counter()
    with Session(db.get_engine(), expire_on_commit=False) as session:
        people, orgs = seed_people(session, users, rng)
        say(f"seeded {len(people)} users, {len(orgs)} organisations")
        space_rows, readmes = seed_spaces(session, people[0], people + orgs, spaces, rng)
        ids = {(s.owner, s.name): (s.id or 0, s.uid) for s in space_rows}
        say(f"seeded {len(space_rows)} Spaces")
        log = EventLog(ids)
        for space in space_rows:
            log.life_of(space, rng)
        public = [s for s in space_rows if not s.private]
        likes = seed_likes(session, people, public, log, rng)
        insert_many(session, sorted(log.rows, key=lambda e: e.at))
        say(f"seeded {len(likes)} likes, {len(log.rows)} events")

        tally: dict[int, int] = {}
        for like in likes:
            tally[like.space_id] = tally.get(like.space_id, 0) + 1
        by_likes = sorted(public, key=lambda s: -tally.get(s.id or 0, 0))
        viewer = people[0]
        target = next(s for s in by_likes if s.owner == viewer.name)
        other = next(s for s in by_likes if s.owner != viewer.name)
        for space in (target, other):
            give_repo(session, space, readmes[space.full_name])
        opened = seed_discussions(session, by_likes[:100], people, rng)
        seed_settings(session, viewer, target, rng)
        counts = {
            "users": len(people),
            "orgs": len(orgs),
            "spaces": len(space_rows),
            "private": len(space_rows) - len(public),
            "likes": len(likes),
            "events": len(log.rows),
            "discussions": opened,
            "viewer_spaces": sum(s.owner == viewer.name for s in space_rows),
            "target_likes": tally.get(target.id or 0, 0),
        }
        seconds = time.perf_counter() - started
        say(f"seeded in {seconds:.1f} s: {counts}")
        return Seeded(viewer.name, target.full_name, other.full_name, seconds, counts)


def seed_people(session: Session, users: int, rng: random.Random) -> tuple[list[User], list[User]]:
    """`users` users, then ORGS organisations (core/organizations.create_org) of ten members
    each; the first user, the viewer, is a member of three."""
    from sqlmodel import col, select

    from orchestrator.core import organizations
    from orchestrator.core.models import OrgMember, OrgRole, User, utcnow

    now = utcnow()
    insert_many(
        session,
        [
            User(
                name=f"{rng.choice(WORDS)}-fan{i:04d}",
                fullname=f"Person {i}",
                created_at=now - timedelta(days=rng.uniform(30, 900)),
            )
            for i in range(users)
        ],
    )
    people = list(session.exec(select(User).order_by(col(User.id))).all())
    orgs = [
        organizations.create_org(session, f"lab{i:02d}", people[i + 1], actor="bench")
        for i in range(ORGS)
    ]
    members = [(org, person) for org in orgs for person in rng.sample(people[ORGS + 1 :], 10)] + [
        (org, people[0]) for org in orgs[:3]
    ]
    insert_many(
        session,
        [OrgMember(org_id=o.id or 0, user_id=p.id or 0, role=OrgRole.WRITE) for o, p in members],
    )
    return people, orgs


def seed_spaces(
    session: Session, viewer: User, owners: list[User], count: int, rng: random.Random
) -> tuple[list[Space], dict[str, str]]:
    """`count` Spaces, as a push of a Hub-style README leaves them; an owner's share falls
    off fast (the first, the viewer, has ~3% of them, most owners a few). Returns them with
    their ids, and each one's README by full name."""
    from sqlmodel import select

    from orchestrator.core.hostnames import preferred_label
    from orchestrator.core.models import Space, Stage, Visibility, utcnow
    from orchestrator.spaces.config import parse_readme

    now = utcnow()
    rows: list[Space] = []
    readmes: dict[str, str] = {}
    for i in range(count):
        owner = viewer if i == 0 else owners[int(len(owners) * rng.random() ** 2)]
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{i}"
        text = readme(rng, name, weighted(rng, SDK_MIX))
        config = parse_readme(text)
        stage = Stage(weighted(rng, STAGE_MIX)) if i else Stage.RUNNING
        running = stage.startswith("RUNNING")
        built = stage not in (Stage.NO_APP_FILE, Stage.CONFIG_ERROR)
        created = now - timedelta(days=rng.uniform(1, 365))
        sha = secrets.token_hex(20)
        hardware = weighted(rng, HARDWARE_MIX)
        host = preferred_label(owner.name, name)  # unique: the names carry their index
        private = i > 0 and rng.random() < PRIVATE_SHARE
        rows.append(
            Space(
                owner=owner.name,
                name=name,
                host=host,
                owner_id=owner.id or 0,
                creator_id=viewer.id if owner.is_org else owner.id,
                sdk=config.sdk,
                visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
                requested_hardware=hardware,
                current_hardware=hardware if running else None,
                stage=stage,
                error_message="exit code 1" if "ERROR" in stage else None,
                head_sha=sha,
                built_sha=sha if built else None,
                built_image=f"spaceport/{host}:{sha[:12]}" if built else None,
                serving_sha=sha if running else None,
                card_data=json.dumps(config.to_card_data()),
                sleep_depth="deep" if stage == Stage.SLEEPING else None,
                created_at=created,
                updated_at=created + (now - created) * rng.random(),
            )
        )
        readmes[f"{owner.name}/{name}"] = text
    insert_many(session, rows)
    found = {(s.owner, s.name): s for s in session.exec(select(Space)).all()}
    return [found[(s.owner, s.name)] for s in rows], readmes


class EventLog:
    """The events the seeded Spaces' lives leave, as core/events.record writes them."""

    def __init__(self, ids: dict[tuple[str, str], tuple[int, str]]) -> None:
        self.ids = ids
        self.rows: list[Event] = []

    def add(self, space: Space, kind: str, actor: str, at: datetime, **data: Any) -> None:
        from orchestrator.core.models import Event

        space_id, uid = self.ids[(space.owner, space.name)]
        self.rows.append(
            Event(
                at=at,
                kind=kind,
                space_id=space_id,
                space_uid=uid,
                space_name=space.full_name,
                actor=actor,
                data=json.dumps(data),
            )
        )

    def stage(self, space: Space, at: datetime, before: str, after: str) -> None:
        self.add(space, "stage.changed", CONTROLLER, at, **{"from": before, "to": after})

    def life_of(self, space: Space, rng: random.Random) -> None:
        """Created, then one to three builds, each started and ending in the Space's stage."""
        at = space.created_at
        created = {"visibility": str(space.visibility), "hardware": space.requested_hardware}
        self.add(space, "space.created", space.owner, at, **created)
        if space.built_sha is None:
            self.add(space, "commit.refused", space.owner, at, commit=space.head_sha)
            return
        for build in range(rng.randint(1, 3)):
            at += timedelta(minutes=rng.uniform(1, 600))
            self.add(space, "build.queued", space.owner, at, build_id=build, commit=space.head_sha)
            self.add(space, "build.started", WORKER, at, build_id=build, worker="w1")
            self.stage(space, at, "NO_APP_FILE", "BUILDING")
            at += timedelta(seconds=rng.uniform(20, 300))
            self.add(space, "build.ended", WORKER, at, build_id=build, status="succeeded")
            self.stage(space, at, "BUILDING", "APP_STARTING")
            self.add(space, "instance.started", CONTROLLER, at, revision=space.head_sha)
            self.add(space, "status.changed", CONTROLLER, at, fields=["serving_address"])
            self.stage(space, at, "APP_STARTING", str(space.stage))


def seed_likes(
    session: Session, people: list[User], public: list[Space], log: EventLog, rng: random.Random
) -> list[SpaceLike]:
    """Each user likes ~25 public Spaces (exponentially spread: some hundreds), mostly the
    popular few, over the last 90 days; each like with its `space.liked` event."""
    from orchestrator.core.models import SpaceLike, utcnow

    now = utcnow()
    likes: list[SpaceLike] = []
    for person in people:
        wanted = int(rng.expovariate(1 / 25))
        for index in {int(len(public) * rng.random() ** 4) for _ in range(wanted)}:
            space = public[index]
            at = now - timedelta(days=rng.uniform(0, 90))
            likes.append(SpaceLike(user_id=person.id or 0, space_id=space.id or 0, created_at=at))
            log.add(space, "space.liked", person.name, at)
    insert_many(session, likes)
    return likes


def give_repo(session: Session, space: Space, text: str) -> None:
    """A real repository with the Hub's first commit (README, .gitattributes) and an app."""
    from orchestrator.repos import initial_commit, store

    repo = store.init_bare(space.owner, space.name)
    files = initial_commit.default_files(space.name, space.sdk or "gradio", gradio_version=GRADIO)
    files["README.md"] = text.encode()
    files["app.py"] = APP
    sha = initial_commit.write(repo, files, store.identity(space.owner))
    space.head_sha = space.built_sha = space.serving_sha = sha
    session.add(space)
    session.commit()


def seed_discussions(
    session: Session, spaces: list[Space], people: list[User], rng: random.Random
) -> int:
    """One to four discussions on each of `spaces` (a fifth of them pull requests), with up
    to three comments, through community/discussions."""
    from orchestrator.community import discussions

    opened = 0
    for space in spaces:
        for _ in range(rng.randint(1, 4)):
            found = discussions.open_discussion(
                session,
                space,
                rng.choice(people),
                f"Question about {space.name}",
                "How does it work?",
                pull_request=rng.random() < 0.2,
            )
            for _ in range(rng.randint(0, 3)):
                discussions.comment(session, space, found, rng.choice(people), "Thanks!")
            opened += 1
        session.commit()
    return opened


def seed_settings(session: Session, viewer: User, space: Space, rng: random.Random) -> None:
    """The viewer's tokens and credit ledger (a grant and 2,000 charges), which the
    settings pages show."""
    from orchestrator.billing import accounts
    from orchestrator.core import auth
    from orchestrator.core.models import CreditEntry, CreditEntryKind, utcnow

    for n in range(5):
        auth.create_token(session, viewer, display_name=f"laptop-{n}")
    account = accounts.grant(session, viewer, 50_000_000, actor="bench", note="welcome")
    session.commit()
    now = utcnow()
    charges = []
    for n in range(2000):
        seconds = rng.uniform(60, 3600)
        charges.append(
            CreditEntry(
                account_id=account.id or 0,
                kind=CreditEntryKind.CHARGE,
                amount_micro_usd=-int(seconds * 111),
                space_uid=space.uid,
                space_name=space.full_name,
                hardware="t4-small",
                started_at=now - timedelta(hours=2000 - n),
                ended_at=now - timedelta(hours=2000 - n) + timedelta(seconds=seconds),
                seconds=seconds,
                actor=BILLING,
                created_at=now - timedelta(hours=2000 - n),
            )
        )
    insert_many(session, charges)


def analyze_tables() -> None:
    """What PostgreSQL's autovacuum does within a minute of a bulk change: without table
    statistics the planner takes the filtered Spaces for one row and joins the like tally
    in a nested loop (bench/README.md). SQLite is left as Spaceport leaves it: no ANALYZE."""
    from sqlalchemy import text

    from orchestrator.core import db

    with db.get_engine().begin() as connection:
        connection.execute(text("ANALYZE"))
    say("ANALYZE done")


def sign_in(client: TestClient, name: str) -> None:
    """A web session for `name`, its cookie on the client (as /login would leave it)."""
    from sqlmodel import Session, select

    from orchestrator.core import db, web_sessions
    from orchestrator.core.models import User

    with Session(db.get_engine()) as session:
        user = session.exec(select(User).where(User.name == name)).one()
        value, _row = web_sessions.start_session(session, user)
    client.cookies.set(web_sessions.COOKIE, value)


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    who: str
    status: int
    median_ms: float
    p95_ms: float


def time_get(client: TestClient, path: str, requests: int) -> tuple[int, list[float]]:
    for _ in range(2):  # warm-up: templates compiled, caches filled, not timed
        answer = client.get(path, follow_redirects=False)
    times = []
    for _ in range(requests):
        begun = time.perf_counter()
        answer = client.get(path, follow_redirects=False)
        times.append((time.perf_counter() - begun) * 1000)
    return answer.status_code, times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def stages_query(client: TestClient) -> str:
    """The listing script's poll: one `space=` per badge on the home page (spaceport.js)."""
    import re
    from urllib.parse import quote

    found = re.findall(r'data-stage-of="([^"]+)"', client.get("/").text)
    say(f"the home page shows {len(found)} cards")
    return "/web/stages?" + "&".join("space=" + quote(f, safe="") for f in found)


def pages(seeded: Seeded, stages: str) -> list[tuple[str, str, bool, bool]]:
    """(label, path, signed in, optional) for every page timed: an optional page is one that
    other work was still adding when the bench was written, skipped when it answers 404."""
    o, n = seeded.target.split("/")
    space = f"/spaces/{o}/{n}"
    mine = f"/{o} (its {seeded.counts['viewer_spaces']} Spaces)"
    listings = [
        ("/", "/"),
        ("/spaces?sort=likes", "/spaces?sort=likes"),
        ("/spaces?sort=updated", "/spaces?sort=updated"),
        ("/spaces?search=vision", "/spaces?search=vision"),
        ("/spaces?search=(no match)", "/spaces?search=nothing-matches-this"),
        ("/spaces?sdk=gradio&stage=running", "/spaces?sdk=gradio&stage=running"),
        ("/spaces?p=50 (trending)", "/spaces?p=50"),
        ("/spaces?p=50&sort=likes", "/spaces?p=50&sort=likes"),
        (mine, f"/{o}"),
    ]
    both = [
        ("/spaces/{o}/{n}", space),
        ("/web/stages (home's 30 badges)", stages),
        ("/web/feed?after=0", f"/web/feed?space={o}/{n}&after=0"),
    ]
    optional_both = [
        ("/spaces/{o}/{n}/tree/main", f"{space}/tree/main"),
        ("/spaces/{o}/{n}/blob/main/README.md", f"{space}/blob/main/README.md"),
        ("/spaces/{o}/{n}/commits/main", f"{space}/commits/main"),
        ("/spaces/{o}/{n}/discussions", f"{space}/discussions"),
        ("/spaces/{o}/{n}/discussions/1", f"{space}/discussions/1"),
    ]
    signed_only = [
        ("/spaces/{o}/{n} (another's)", f"/spaces/{seeded.other_space}"),
        ("/settings/tokens", "/settings/tokens"),
        ("/settings/billing", "/settings/billing"),
    ]
    optional_signed = [
        ("/spaces/{o}/{n}/settings", f"{space}/settings"),
        ("/new-space", "/new-space"),
        ("/settings", "/settings"),
    ]
    anonymous = [(label, path, False, False) for label, path in listings + both]
    anonymous += [(label, path, False, True) for label, path in optional_both]
    signed = [(label, path, True, False) for label, path in listings + both + signed_only]
    signed += [(label, path, True, True) for label, path in optional_both + optional_signed]
    return anonymous + signed


def environment(database: str) -> list[str]:
    import platform

    import sqlalchemy

    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    try:
        os_name = next(
            line.split("=", 1)[1].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        )
    except (OSError, StopIteration):
        os_name = "?"
    return [
        f"date:      {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC",
        f"os:        {os_name}; kernel {platform.release()}; {os.cpu_count()} CPUs; "
        f"load average {load}",
        f"python:    {platform.python_version()}; SQLAlchemy {sqlalchemy.__version__}; "
        f"database {database}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--spaces", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=8, help="of the random data")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="PostgreSQL: time the pages before any statistics exist (see bench/README.md)",
    )
    parser.add_argument("--keep-home", action="store_true")
    args = parser.parse_args(argv)
    analyze = args.database == "postgresql" and not args.no_analyze

    with bench_home(args.database, args.keep_home):
        seeded = seed(args.users, args.spaces, random.Random(args.seed))
        if analyze:
            analyze_tables()
        from fastapi.testclient import TestClient

        from orchestrator.app import create_api

        rows: list[Row] = []
        with TestClient(create_api(migrate=False), raise_server_exceptions=False) as client:
            stages = stages_query(client)
            _, ref_anon = time_get(client, "/static/spaceport.css", args.requests)
            signed_in = False
            timed: list[tuple[str, str, int, list[float]]] = []
            for label, path, want_signed, optional in pages(seeded, stages):
                if want_signed and not signed_in:
                    sign_in(client, seeded.viewer)
                    signed_in = True
                status, times = time_get(client, path, args.requests)
                if status == 404 and optional:
                    say(f"skipped {path}: 404 (no such page in this tree)")
                    continue
                timed.append((label, "signed in" if want_signed else "anonymous", status, times))
            _, ref_signed = time_get(client, "/static/spaceport.css", args.requests)
        reference = statistics.median(ref_anon + ref_signed)
        first = {label: i for i, (label, *_rest) in reversed(list(enumerate(timed)))}
        timed.sort(key=lambda t: first[t[0]])  # a page's two viewers side by side
        for label, who, status, times in timed:
            rows.append(Row(label, who, status, statistics.median(times), p95(times)))

    stats = "; ANALYZE after seeding" if analyze else ""
    if args.database == "postgresql" and not analyze:
        stats = "; no ANALYZE (no table statistics)"
    print("\n".join(environment(args.database + stats)))
    c = seeded.counts
    print(
        f"data:      {c['users']} users, {c['orgs']} organisations, {c['spaces']} Spaces "
        f"({c['private']} private), {c['likes']} likes, {c['events']} events, "
        f"{c['discussions']} discussions; seeded in {seeded.seconds:.1f} s"
    )
    print(
        f"viewer:    {seeded.viewer} (owns {c['viewer_spaces']} Spaces, member of 3 orgs); "
        f"Space page: {seeded.target} ({c['target_likes']} likes)"
    )
    print()
    print(f"{args.requests} requests a page, in process (TestClient), ms")
    print(f"{'page':44} {'viewer':10} {'code':>4} {'median':>7} {'p95':>7} {'x ref':>6}  goal")
    print(f"{'/static/spaceport.css (reference)':44} {'-':10} {200:>4} {reference:7.1f} "
          f"{p95(ref_anon + ref_signed):7.1f} {1.0:6.1f}")  # fmt: skip
    for r in rows:
        verdict = "ok" if r.p95_ms <= GOAL_MS and r.status < 400 else "OVER"
        if r.status >= 400:
            verdict = f"HTTP {r.status}"
        print(
            f"{r.label:44} {r.who:10} {r.status:>4} {r.median_ms:7.1f} {r.p95_ms:7.1f} "
            f"{r.median_ms / reference:6.1f}  {verdict} (<= {GOAL_MS:.0f})"
        )
    worst = max(rows, key=lambda r: r.p95_ms)
    print(f"\nslowest: {worst.label} ({worst.who}), p95 {worst.p95_ms:.1f} ms")


if __name__ == "__main__":
    main()
