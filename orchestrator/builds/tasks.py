"""Celery: the app, its broker, and the tasks.

The broker is Redis when SPACEPORT_BROKER_URL says so. Otherwise it is the embedded
broker: kombu's SQLAlchemy transport on its own SQLite file, $SPACEPORT_HOME/broker.db
(orchestrator/builds/embedded_broker.py), so one machine needs no extra server. Task state
lives in Spaceport's own database, not in a Celery result backend, so no backend is
configured.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from orchestrator.builds import embedded_broker
from orchestrator.core.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("spaceport")
    if settings.broker_url:
        app.conf.broker_url = settings.broker_url
    else:
        app.conf.broker_url = embedded_broker.url(settings.broker_db)
        app.conf.broker_transport = embedded_broker.TRANSPORT
        # Remote control needs broadcast (fanout), which the SQLAlchemy transport does not
        # carry; cancellation goes through the database instead (see orchestrator.builds.state).
        app.conf.worker_enable_remote_control = False
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Celery beat's schedule: housekeeping that no request triggers.
        beat_schedule={
            "reap-stale-builds": {
                "task": "spaceport.reap_stale_builds",
                "schedule": max(1.0, settings.build_heartbeat_timeout_seconds / 3),
                # A tick nobody picked up in time is replaced by the next one.
                "options": {"expires": max(1.0, settings.build_heartbeat_timeout_seconds)},
            },
            "resend-lost-builds": {
                "task": "spaceport.resend_lost_builds",
                "schedule": max(1.0, settings.build_resend_after_seconds / 3),
                "options": {"expires": max(1.0, settings.build_resend_after_seconds)},
            },
        },
    )
    return app


celery_app = make_celery(get_settings())


@celery_app.task(name="spaceport.build")
def build_task(build_id: int) -> None:
    from orchestrator.builds.runner import run_build

    run_build(build_id)


@celery_app.task(name="spaceport.reap_stale_builds")
def reap_stale_builds_task() -> int:
    from orchestrator.builds.state import reap_stale_builds

    return reap_stale_builds()


@celery_app.task(name="spaceport.resend_lost_builds")
def resend_lost_builds_task() -> int:
    from orchestrator.builds.state import resend_lost_builds

    settings = get_settings()
    if not settings.broker_url:
        embedded_broker.delete_delivered(settings.broker_db)
    return resend_lost_builds()


@worker_ready.connect
def _fail_builds_of_dead_workers(**_: object) -> None:
    """A worker that starts on a host where an earlier one died (kill -9, OOM) fails the
    builds that one left `running` at once, instead of after the heartbeat timeout."""
    from orchestrator.builds.state import reap_stale_builds

    reap_stale_builds(only_dead_local_workers=True)
