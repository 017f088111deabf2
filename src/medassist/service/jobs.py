"""Background jobs of a plugin (screening a library, training a model): one queue per plugin,
one worker thread that runs its jobs in turn (started on first use), kept in memory until the
server restarts. A user sees only their own jobs; limits per user and per server answer 429.

A job is a ``BackgroundJob`` (or any object with ``id``, ``principal``, ``created`` and
``active``); ``BackgroundJob.run`` is the one lifecycle: queued → running → done or failed, with
the failure's message for the user, the time it took and when it finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import HTTPException

from medassist.exceptions import MedassistError
from medassist.service.auth import Principal
from medassist.service.context import ServiceContext


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(kw_only=True)
class BackgroundJob:
    """What every plugin's job has: who asked and how, its status, the message shown when it
    failed, when it was created and finished and how long it ran. Plugins add their own fields."""

    id: str
    principal: Principal
    via: str
    created: str = field(default_factory=_now)
    status: JobStatus = JobStatus.QUEUED
    message: str = ""
    finished: str | None = None
    seconds: float | None = None

    @property
    def active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    def run(self, work: Callable[[], None], *, log: logging.Logger, scrub: Callable[[str], str] = str,
            failure: str = "The job failed on the server. The error is in the server log.") -> None:
        """Run ``work`` as this job: running, then done; a ``MedassistError`` fails the job with its
        message (through ``scrub``, which hides server paths), anything else with ``failure`` (the
        error itself goes to the log, never to the user). Never raises: a job ends in a state the user sees."""
        t0 = time.perf_counter()
        self.status = JobStatus.RUNNING
        try:
            work()
            self.status = JobStatus.DONE
        except MedassistError as e:
            self.message = scrub(str(e))
            self.status = JobStatus.FAILED
        except Exception as e:  # noqa: BLE001 (a job must end in a state the user sees; the error goes to the log)
            log.error("job %s failed: %s", self.id, type(e).__name__, exc_info=e)
            self.message = failure
            self.status = JobStatus.FAILED
        finally:
            self.seconds = round(time.perf_counter() - t0, 2)
            self.finished = _now()


@dataclass(kw_only=True)
class JobQueue:
    """The jobs of one plugin. ``kind`` names them in messages ("screening", "training")."""

    kind: str
    run: Callable[[ServiceContext, Any], None]
    max_jobs: int
    max_active_per_user: int
    thread_name: str
    jobs: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor | None = None

    def submit(self, ctx: ServiceContext, job: Any, *, accepted: Callable[[], object] | None = None) -> None:
        """Queue ``job``; ``accepted`` (e.g. the audit entry) runs once it is admitted, before it can start."""
        with self.lock:
            active = sum(1 for j in self.jobs.values() if j.principal.user_id == job.principal.user_id and j.active)
            if active >= self.max_active_per_user:
                raise HTTPException(429, f"You have {active} {self.kind} jobs queued or running; wait for one to finish.")
            finished = sorted((j for j in self.jobs.values() if not j.active), key=lambda j: j.created)
            while len(self.jobs) >= self.max_jobs and finished:
                del self.jobs[finished.pop(0).id]
            if len(self.jobs) >= self.max_jobs:
                raise HTTPException(429, f"The server is busy with {self.kind} jobs; try again later.")
            if accepted is not None:
                accepted()
            self.jobs[job.id] = job
            if self.executor is None:
                self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
            self.executor.submit(self.run, ctx, job)

    def get(self, job_id: str, principal: Principal) -> Any:
        job = self.jobs.get(job_id)
        if job is None or job.principal.user_id != principal.user_id:  # another user's job does not exist for you
            raise HTTPException(404, f"No {self.kind} job {job_id} of yours on this server (jobs last until it restarts).")
        return job

    def of_user(self, principal: Principal) -> list[Any]:
        return sorted((j for j in self.jobs.values() if j.principal.user_id == principal.user_id), key=lambda j: j.created, reverse=True)


def job_queue(ctx: ServiceContext, plugin: str, make: Callable[[], JobQueue]) -> JobQueue:
    """The plugin's queue in this server's state (``ctx.state[plugin]["jobs"]``), made on first use."""
    state = ctx.state.setdefault(plugin, {})
    if "jobs" not in state:
        state["jobs"] = make()
    return state["jobs"]
