"""Database engine and sessions. The schema is owned by Alembic: `migrate()` brings any
database, new or old, to the current revision without losing data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from orchestrator.core import home, secret_store
from orchestrator.core.settings import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # WAL lets the API read while a worker writes build logs; foreign keys are off in
        # SQLite unless asked for.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _make_engine(settings.sqlalchemy_url)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database) if parsed.database != ":memory:" else None


def migrate() -> None:
    """Upgrade the configured database to the newest schema revision, encrypt any secret
    stored before encryption existed, and keep the home and database private."""
    settings = get_settings()
    sqlite_db = sqlite_path(settings.sqlalchemy_url)
    home.make_private(settings.home, sqlite_db)
    secret_store.ensure_key()
    command.upgrade(alembic_config(settings.sqlalchemy_url), "head")
    with get_engine().begin() as connection:
        secret_store.encrypt_plaintext_rows(connection)
    # A database created just now by the upgrade gets the same treatment.
    home.make_private(settings.home, sqlite_db)


@contextmanager
def session_scope() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def get_session() -> Iterator[Session]:
    """FastAPI dependency."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session
