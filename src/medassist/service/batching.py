"""Opportunistic micro-batching of predictions: requests that arrive while a batch is being
computed are gathered into the next batch, so N concurrent requests cost about one forward pass
of the model instead of N (a large model on a CPU is bound by reading its weights, not by rows).
No request waits on purpose: a lone request runs at once.

The first request to find no batch running leads: it takes every queued job with the same key
(up to ``max_rows`` rows), runs them together, hands each its own rows' results and passes the
lead to the next queued job. If a batch fails, its jobs are run one by one, so one bad request
never fails another.

A payload is anything with ``len`` (its rows) that ``concat`` can join: a DataFrame by default,
or the service's column batches. With ``finish``, the leader also hands the batch's results to
``finish(key, [(meta, results), ...])`` once (the audit log's group commit: one transaction for
the whole batch) and each job gets what ``finish`` returned for it; no job is released before
``finish`` has returned, so nothing is acknowledged before it is recorded. If ``finish`` fails
for the batch, it is called for each job alone, so the error stays with its owner.

With ``one_thread``, ``run`` always executes on one dedicated thread (the leader waits for it).

``submit`` is for request threads; ``submit_async`` is for the event loop: the job waits on an
asyncio future, and the batches its jobs lead run on the batcher's own thread, so concurrent
requests cost no thread each and no thread wake-up each (at 32 clients, 32 request threads
blocked on events and woken one by one took a quarter of the server's CPU). Both kinds of job
share the queues, so they batch together.
Memory: glibc gives each thread that allocates its own malloc arena and keeps freed memory
there, so a model whose temporaries (integrated gradients on the large ensemble: hundreds of MB
a batch) are allocated by whichever request thread leads grows one such arena per thread; served
with explanations on, that took RSS from 0.6 to 2 GB. One model thread keeps it to one arena.

Example:
    >>> batcher = Batcher(run=lambda key, frame: predict(frame), max_rows=256)
    >>> rows_out = batcher.submit(("explain", 3), frame)      # from a worker thread
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def _concat_frames(parts: list[Any]) -> Any:
    return pd.concat(parts, ignore_index=True)


@dataclass(eq=False)
class _Job:
    frame: Any  # the payload: a DataFrame or anything else with len() that ``concat`` joins
    meta: Any = None
    event: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: list[Any] | None = None
    error: BaseException | None = None
    #: an event-loop job: its future (resolved on ``loop`` when the job is done) instead of ``event``
    future: asyncio.Future[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def outcome(self) -> list[Any]:
        if self.error is not None:
            raise self.error
        return self.result or []


class Batcher:
    """Runs ``run(key, payload)`` → one result per row, batching concurrent payloads with equal keys."""

    def __init__(self, *, run: Callable[[Hashable, Any], list[Any]], max_rows: int = 256,
                 max_rows_by_key: Callable[[Hashable], int] | None = None,
                 concat: Callable[[list[Any]], Any] = _concat_frames,
                 finish: Callable[[Hashable, list[tuple[Any, list[Any]]]], list[Any]] | None = None,
                 one_thread: bool = False) -> None:
        self.run = run
        self.max_rows = max_rows
        self.max_rows_by_key = max_rows_by_key
        self.concat = concat
        self.finish = finish
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medassist-model",
                                                initializer=self._note_model_thread) if one_thread else None
        self._model_ident: int | None = None
        # event-loop jobs' batches are led from here (the model thread itself when there is one)
        self._lead_thread = self._model_thread or ThreadPoolExecutor(max_workers=1, thread_name_prefix="medassist-batch")
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Job]] = {}
        self._active: set[Hashable] = set()
        self.batches = 0  # counters for tests and benchmarks
        self.jobs = 0

    def submit(self, key: Hashable, frame: Any, meta: Any = None) -> Any:
        """The job's results (``run``'s rows for it), or what ``finish`` made of them."""
        job = _Job(frame, meta)
        with self._lock:
            self._queues.setdefault(key, []).append(job)
            if key not in self._active:
                self._active.add(key)
                job.lead = True
        while not job.lead:
            job.event.wait()
            job.event.clear()
            if job.done:
                return job.outcome()
        self._lead(key)
        return job.outcome()

    async def submit_async(self, key: Hashable, frame: Any, meta: Any = None) -> Any:
        """``submit`` for a coroutine on an event loop: the same results, awaited instead of waited for."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        job = _Job(frame, meta, future=future, loop=loop)
        with self._lock:
            self._queues.setdefault(key, []).append(job)
            if key not in self._active:
                self._active.add(key)
                job.lead = True
        if job.lead:
            self._lead_thread.submit(self._lead, key)
        await future
        return job.outcome()

    def _note_model_thread(self) -> None:
        self._model_ident = threading.get_ident()

    @staticmethod
    def _wake(jobs: list[_Job]) -> None:
        """Release finished or newly leading jobs: set their events, or resolve their futures
        (one call into each event loop for all of its jobs)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for job in jobs:
            if job.future is None or job.loop is None:
                job.event.set()
            else:
                by_loop.setdefault(job.loop, []).append(job.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures)
            except RuntimeError:  # the loop has closed (server shutting down): nobody is waiting
                pass

    def _lead(self, key: Hashable) -> None:
        limit = self.max_rows_by_key(key) if self.max_rows_by_key else self.max_rows
        with self._lock:
            queue = self._queues[key]
            batch: list[_Job] = []
            rows = 0
            while queue and (not batch or rows + len(queue[0].frame) <= limit):
                rows += len(queue[0].frame)
                batch.append(queue.pop(0))
        try:
            self._run_batch(key, batch)
        except BaseException as e:  # a fault outside run/finish: every waiting job gets it, none hangs
            for job in batch:
                if job.result is None and job.error is None:
                    job.error = e
            raise
        finally:
            for job in batch:
                job.done = True
            self._wake(batch)
            with self._lock:
                queue = self._queues[key]
                nxt = queue[0] if queue else None
                if nxt is not None:
                    nxt.lead = True
                else:
                    self._active.discard(key)
            if nxt is not None:
                if nxt.future is None:
                    nxt.event.set()  # a request thread: it leads the next batch itself
                else:
                    self._lead_thread.submit(self._lead, key)

    def _call(self, key: Hashable, payload: Any) -> list[Any]:
        if self._model_thread is None or threading.get_ident() == self._model_ident:
            return self.run(key, payload)
        return self._model_thread.submit(self.run, key, payload).result()

    def _run_batch(self, key: Hashable, batch: list[_Job]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        ran = False
        if len(batch) > 1:
            try:
                results = self._call(key, self.concat([j.frame for j in batch]))
                start = 0
                for job in batch:
                    job.result = results[start:start + len(job.frame)]
                    start += len(job.frame)
                ran = True
            except Exception:  # one job's input broke the batch: run each alone, so errors stay with their owner
                pass
        if not ran:
            for job in batch:
                try:
                    job.result = self._call(key, job.frame)
                except Exception as e:  # handed to the job's own request thread, which re-raises it
                    job.error = e
        if self.finish is not None:
            self._finish(key, [j for j in batch if j.error is None])

    def _finish(self, key: Hashable, jobs: list[_Job]) -> None:
        finish = self.finish
        if finish is None or not jobs:
            return
        if len(jobs) > 1:
            try:
                outcomes = finish(key, [(j.meta, j.outcome()) for j in jobs])
                for job, outcome in zip(jobs, outcomes, strict=True):
                    job.result = outcome
                return
            except Exception:  # e.g. one record the database refuses: each job alone, as in _run_batch
                pass
        for job in jobs:
            try:
                job.result = finish(key, [(job.meta, job.outcome())])[0]
            except Exception as e:
                job.result, job.error = None, e


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for f in futures:
        if not f.done():  # a cancelled request's future stays cancelled; its job was still recorded
            f.set_result(None)
