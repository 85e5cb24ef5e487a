"""Celery: the app, its broker, and the tasks.

The broker is Redis when SPACEPORT_BROKER_URL says so. Otherwise it is the embedded
broker: kombu's filesystem transport, queue files under $SPACEPORT_HOME/broker, so one
machine needs no extra server. Task state lives in Spaceport's own database, not in a
Celery result backend, so no backend is configured.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from orchestrator.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("spaceport")
    if settings.broker_url:
        app.conf.broker_url = settings.broker_url
    else:
        queue_dir = settings.broker_dir / "queue"
        processed_dir = settings.broker_dir / "processed"
        control_dir = settings.broker_dir / "control"
        for directory in (queue_dir, processed_dir, control_dir):
            directory.mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://"
        app.conf.broker_transport_options = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "control_folder": str(control_dir),
            # The file transport polls; a second (its default) is felt on every push.
            "polling_interval": 0.1,
            "store_processed": False,
        }
        # Remote control needs broadcast, which the file transport does not carry;
        # cancellation goes through the database instead (see orchestrator.builds).
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
        },
    )
    return app


celery_app = make_celery(get_settings())


@celery_app.task(name="spaceport.build")
def build_task(build_id: int) -> None:
    from orchestrator.builds import run_build

    run_build(build_id)


@celery_app.task(name="spaceport.reap_stale_builds")
def reap_stale_builds_task() -> int:
    from orchestrator.builds import reap_stale_builds

    return reap_stale_builds()


@worker_ready.connect
def _fail_builds_of_dead_workers(**_: object) -> None:
    """A worker that starts on a host where an earlier one died (kill -9, OOM) fails the
    builds that one left `running` at once, instead of after the heartbeat timeout."""
    from orchestrator.builds import reap_stale_builds

    reap_stale_builds(only_dead_local_workers=True)
