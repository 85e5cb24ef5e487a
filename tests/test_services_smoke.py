"""The throwaway Redis and PostgreSQL servers of tests/services.py start, answer and stop."""

from __future__ import annotations

import psycopg
import pytest
import redis
import sqlalchemy

from tests.services import (
    postgres_installed,
    redis_installed,
    require,
    start_postgres,
    start_redis,
)

pytestmark = pytest.mark.postgres

FIX = "run scripts/bootstrap.sh --test"


def test_redis_starts_answers_and_stops(tmp_path):
    require("Redis (redis-server)", redis_installed(), FIX)
    url, stop = start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(url)
        client.set("spaceport:smoke", "ok")
        assert client.get("spaceport:smoke") == b"ok"
        client.close()
    finally:
        stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_postgres_starts_answers_and_stops(tmp_path):
    require("PostgreSQL", postgres_installed(), FIX)
    url, stop = start_postgres(tmp_path)
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            row = conn.execute(sqlalchemy.text("SELECT current_database(), current_user")).one()
        engine.dispose()
        assert tuple(row) == ("spaceport", "spaceport")
    finally:
        stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=2)
