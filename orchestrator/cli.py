"""The `spaceport` command."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.core.models import OrgRole, TokenRole


def cmd_token_create(args: argparse.Namespace) -> int:
    from orchestrator.core import auth, db

    db.migrate()
    role = TokenRole.ADMIN if args.admin else TokenRole(args.role)
    with db.session_scope() as session:
        try:
            user = auth.get_or_create_user(session, args.user)
        except ValueError as exc:
            print(f"spaceport: {exc}", file=sys.stderr)
            return 2
        token = auth.create_token(session, user, role, display_name=args.name)
    # Only the token on stdout, so scripts can capture it: TOKEN=$(spaceport token create me)
    print(token)
    return 0


def cmd_user_password(args: argparse.Namespace) -> int:
    """`spaceport user password NAME`: set the password NAME signs in to the pages with (the
    user is created if missing). Read from standard input when it is not a terminal (one
    line), else asked for twice, so it never appears in a command line or shell history."""
    import getpass

    from orchestrator.core import auth, db, web_sessions

    if sys.stdin.isatty():
        password = getpass.getpass(f"New password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            print("spaceport: the two passwords differ; nothing was changed", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    db.migrate()
    with db.session_scope() as session:
        try:
            user = auth.get_or_create_user(session, args.user)
            web_sessions.set_password(session, user, password)
        except ValueError as exc:
            print(f"spaceport: {exc}", file=sys.stderr)
            return 2
    print(f"-----> {user.name} can sign in at {get_settings_url()}/login")
    return 0


def get_settings_url() -> str:
    from orchestrator.core.settings import get_settings

    return get_settings().public_url.rstrip("/")


def cmd_org(args: argparse.Namespace) -> int:
    """`spaceport org ...`: organisations and their members, as the operator."""
    from orchestrator.core import auth, db
    from orchestrator.core import organizations as orgs
    from orchestrator.core.events import ACTOR_SYSTEM

    db.migrate()
    with db.session_scope() as session:
        try:
            if args.org_command == "create":
                admin = auth.get_or_create_user(session, args.admin)
                org = orgs.create_org(
                    session, args.name, admin, actor=ACTOR_SYSTEM, fullname=args.fullname
                )
                print(org.name)
            elif args.org_command == "list":
                for org in orgs.list_orgs(session):
                    print(f"{org.name}\t{len(orgs.members(session, org))} members")
            elif args.org_command == "members":
                for member in orgs.members(session, orgs.require_org(session, args.org)):
                    print(f"{member.user.name}\t{member.role}")
            elif args.org_command == "add-member":
                org = orgs.require_org(session, args.org)
                user = auth.get_or_create_user(session, args.user)
                orgs.set_member(session, org, user, OrgRole(args.role), actor=ACTOR_SYSTEM)
            elif args.org_command == "remove-member":
                org = orgs.require_org(session, args.org)
                orgs.remove_member(
                    session, org, orgs.require_user(session, args.user), actor=ACTOR_SYSTEM
                )
        except ValueError as exc:  # OrgError, and bad or taken user names
            print(f"spaceport: {exc}", file=sys.stderr)
            return 2
    return 0


def cmd_credit(args: argparse.Namespace) -> int:
    """`spaceport credit grant NAME AMOUNT_USD` and `spaceport credit show NAME`, as the
    operator: a user's or organisation's credit (orchestrator/billing/accounts.py)."""
    from orchestrator.billing import accounts
    from orchestrator.core import db
    from orchestrator.core.events import ACTOR_SYSTEM

    db.migrate()
    with db.session_scope() as session:
        try:
            owner = accounts.find_owner(session, args.name)
            if args.credit_command == "grant":
                amount = accounts.parse_usd(args.amount)
                accounts.grant(session, owner, amount, actor=ACTOR_SYSTEM, note=args.note)
                session.commit()
            assert owner.id is not None
            balance = accounts.balance_of(session, owner.id)
        except accounts.CreditError as exc:
            print(f"spaceport: {exc}", file=sys.stderr)
            return 2
    print(f"{owner.name}\t{accounts.usd(balance)}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Build the Space's newest commit again; --no-cache rebuilds every layer."""
    from orchestrator.builds.deploy import deploy_commit
    from orchestrator.core import db
    from orchestrator.core.stages import Problem
    from orchestrator.spaces import registry as spaces

    owner, _, name = args.space.partition("/")
    with db.session_scope() as session:
        space = spaces.get_space(session, owner, name)
        if space is None or not space.head_sha:
            print(f"spaceport: no Space {args.space} with a pushed commit", file=sys.stderr)
            return 1
        build = deploy_commit(session, space, space.head_sha, no_cache=args.no_cache)
        if build is None:  # the commit can't be built: the pipeline wrote why
            problem = Problem.load(space.head_problem)
            why = f"{problem.stage}: {problem.message}" if problem else "it can't be built"
            print(f"spaceport: {args.space}: {why}", file=sys.stderr)
            return 1
        print(build.id)
    return 0


def cmd_duplicate(args: argparse.Namespace) -> int:
    """Duplicate a Space as the operator (the API does the same for users, with their
    permissions): full history, LFS objects and variables; the image is reused."""
    from sqlmodel import select

    from orchestrator.billing.accounts import OutOfCredit
    from orchestrator.core import db
    from orchestrator.core.events import ACTOR_SYSTEM
    from orchestrator.core.models import User, Visibility
    from orchestrator.spaces import lifecycle
    from orchestrator.spaces import registry as spaces

    db.migrate()
    source_owner, _, source_name = args.source.partition("/")
    target_owner, _, target_name = args.target.partition("/")
    with db.session_scope() as session:
        source = spaces.get_space(session, source_owner, source_name)
        if source is None:
            print(f"spaceport: no Space {args.source}", file=sys.stderr)
            return 1
        owner = session.exec(select(User).where(User.name == target_owner)).first()
        if owner is None:
            print(
                f"spaceport: no user {target_owner!r}: create one with "
                f"`spaceport token create {target_owner}`",
                file=sys.stderr,
            )
            return 1
        try:
            copy = lifecycle.duplicate(
                session,
                source,
                owner,
                target_name or source.name,
                visibility=Visibility.PRIVATE if args.private else None,
                actor=ACTOR_SYSTEM,
                hardware=args.hardware,
                sleep_time=args.sleep_time,
            )
        except (
            lifecycle.LifecycleError,
            spaces.SpaceNameError,
            ValueError,
            OutOfCredit,  # --hardware of a paid tier for an owner without credit
        ) as exc:
            print(f"spaceport: {exc}", file=sys.stderr)
            return 1
        print(spaces.space_url(copy))
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    from orchestrator.core import db

    db.migrate()
    print("database is at the newest schema", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from orchestrator.api import request_ids
    from orchestrator.app import create_app
    from orchestrator.core.redaction import RedactingFilter
    from orchestrator.core.settings import get_settings
    from orchestrator.gateway.proxy import WEBSOCKET_QUEUE_FRAMES
    from orchestrator.oauth import spaces_door

    for name in ("uvicorn.access", "uvicorn.error"):  # request lines, websocket lines
        logging.getLogger(name).addFilter(RedactingFilter())
    logging.getLogger("uvicorn.access").addFilter(request_ids.AccessLogRequestId())
    config = uvicorn.Config(
        create_app(),
        host=args.host,
        port=args.port,
        log_level="info",
        log_config=request_ids.uvicorn_log_config(),  # access lines end with request_id=
        timeout_keep_alive=75,
        # A visitor's websocket message past the limit closes with 1009 before it is read
        # whole; the gateway holds the app's side to the same limit (gateway/proxy.py).
        ws_max_size=get_settings().websocket_max_message_bytes,
        ws_max_queue=WEBSOCKET_QUEUE_FRAMES,  # its default, 32, could hold 512 MiB
        # Proxied responses carry the app's own Date and Server; the API needs neither.
        server_header=False,
        date_header=False,
    )
    sockets = [config.bind_socket()]
    if door := spaces_door.door_host(get_settings()):
        sockets += spaces_door.bind_door(door, args.port)
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from orchestrator.builds.tasks import celery_app
    from orchestrator.core.settings import get_settings
    from orchestrator.processes.celery_logs import quiet_housekeeping

    concurrency = args.concurrency or get_settings().worker_concurrency
    quiet_housekeeping(celery_app.conf.beat_schedule)
    # Threads: builds wait on Docker and git, not on Python, and a thread pool keeps the
    # worker one process that is easy to stop.
    celery_app.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"spaceport@{os.uname().nodename}",
        ]
    )
    return 0


def cmd_beat(_args: argparse.Namespace) -> int:
    """Celery beat: sends the periodic housekeeping tasks (orchestrator/builds/tasks.py)."""
    from orchestrator.builds.tasks import celery_app
    from orchestrator.core.settings import get_settings
    from orchestrator.processes.celery_logs import BEAT_LOG_LEVEL

    schedule = get_settings().home / "celerybeat-schedule"
    # Beat's INFO lines are one per tick ("Sending due task"): warnings and errors only.
    celery_app.start(["beat", "--loglevel", BEAT_LOG_LEVEL, "--schedule", str(schedule)])
    return 0


def cmd_controller(_args: argparse.Namespace) -> int:
    """The reconciler loop: starts, replaces and stops Space containers."""
    import logging

    from orchestrator.controller.loop import run_forever
    from orchestrator.core.backends import make_backend

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one health probe a second each
    run_forever(make_backend())  # SPACEPORT_BACKEND: docker or kubernetes
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from orchestrator.processes.up import run

    return run(args.host, args.port, args.with_samples)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spaceport", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create", help="create USER if missing and print a new token for them (only the token)"
    )
    create.add_argument("user")
    create.add_argument("--admin", action="store_true", help="an admin token (all Spaces)")
    create.add_argument("--role", choices=[r.value for r in TokenRole], default="write")
    create.add_argument("--name", default="cli", help="a name to recognise the token by")
    create.set_defaults(func=cmd_token_create)

    user = commands.add_parser("user", help="manage users' sign-in to the pages")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    password = user_commands.add_parser(
        "password", help="set USER's password (created if missing; read from stdin or asked)"
    )
    password.add_argument("user")
    password.set_defaults(func=cmd_user_password)

    org = commands.add_parser("org", help="manage organisations and their members")
    org_commands = org.add_subparsers(dest="org_command", required=True)
    org_create = org_commands.add_parser("create", help="create an organisation")
    org_create.add_argument("name")
    org_create.add_argument("--admin", required=True, help="its first admin (created if missing)")
    org_create.add_argument("--fullname", default=None, help="its display name")
    org_commands.add_parser("list", help="list organisations")
    org_members = org_commands.add_parser("members", help="list an organisation's members")
    org_members.add_argument("org")
    org_add = org_commands.add_parser(
        "add-member", help="add USER to ORG (created if missing), or change their role"
    )
    org_add.add_argument("org")
    org_add.add_argument("user")
    org_add.add_argument("--role", choices=[r.value for r in OrgRole], default="read")
    org_remove = org_commands.add_parser("remove-member", help="remove USER from ORG")
    org_remove.add_argument("org")
    org_remove.add_argument("user")
    org.set_defaults(func=cmd_org)

    credit = commands.add_parser("credit", help="grant and show credit for paid hardware")
    credit_commands = credit.add_subparsers(dest="credit_command", required=True)
    credit_grant = credit_commands.add_parser(
        "grant", help="add AMOUNT_USD to the credit of a user or organisation; prints it"
    )
    credit_grant.add_argument("name", metavar="USER_OR_ORG")
    credit_grant.add_argument("amount", metavar="AMOUNT_USD", help="e.g. 10 or 2.50")
    credit_grant.add_argument("--note", default=None, help="why (kept in the ledger)")
    credit_show = credit_commands.add_parser("show", help="print the credit of NAME")
    credit_show.add_argument("name", metavar="USER_OR_ORG")
    credit.set_defaults(func=cmd_credit)

    duplicate = commands.add_parser("duplicate", help="duplicate a Space (prints its URL)")
    duplicate.add_argument("source", metavar="FROM", help="owner/name of the Space to copy")
    duplicate.add_argument("target", metavar="TO", help="owner/name of the copy")
    duplicate.add_argument("--private", action="store_true", help="make the copy private")
    duplicate.add_argument("--hardware", default=None, help="hardware tier (default cpu-basic)")
    duplicate.add_argument("--sleep-time", type=int, default=None, help="seconds, -1: never")
    duplicate.set_defaults(func=cmd_duplicate)

    rebuild = commands.add_parser("rebuild", help="build a Space's newest commit again")
    rebuild.add_argument("space", metavar="OWNER/NAME")
    rebuild.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    rebuild.set_defaults(func=cmd_rebuild)

    commands.add_parser("migrate", help="upgrade the database schema").set_defaults(
        func=cmd_migrate
    )
    for name, func, help_text in (
        ("serve", cmd_serve, "run the API, git hosting and gateway"),
        ("up", cmd_up, "run the whole platform on this machine"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8000)
        sub.set_defaults(func=func)
        if name == "up":
            sub.add_argument(
                "--with-samples",
                action="store_true",
                help="on the first start, deploy the sample Spaces",
            )
    commands.add_parser(
        "controller", help="run the reconciler that keeps Spaces running"
    ).set_defaults(func=cmd_controller)
    commands.add_parser("beat", help="run Celery beat (periodic housekeeping)").set_defaults(
        func=cmd_beat
    )
    worker = commands.add_parser("worker", help="run a Celery build worker")
    worker.add_argument("--concurrency", type=int, default=None)
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    from orchestrator.core import home
    from orchestrator.processes import lifeline

    # Whatever any command creates (database, keys, logs, broker database) is its user's only.
    home.set_umask()
    # A child of `spaceport up` stops when `up` is gone (orchestrator/processes/lifeline.py).
    lifeline.watch_parent()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
