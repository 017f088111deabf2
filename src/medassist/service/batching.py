"""Opportunistic micro-batching of predictions: requests that arrive while a batch is being
computed are gathered into the next batch, so N concurrent requests cost about one forward pass
of the model instead of N (a large model on a CPU is bound by reading its weights, not by rows).
No request waits on purpose: a lone request runs at once.

The first request to find no batch running leads: it takes every queued job with the same key
(up to ``max_rows`` rows), runs them together, hands each its own rows' results and passes the
lead to the next queued job. If a batch fails, its jobs are run one by one, so one bad request
never fails another.

Example:
    >>> batcher = Batcher(run=lambda key, frames: predict(pd.concat(frames)), max_rows=256)
    >>> rows_out = batcher.submit(("explain", 3), frame)      # from a worker thread
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(eq=False)
class _Job:
    frame: pd.DataFrame
    event: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: list[Any] | None = None
    error: BaseException | None = None

    def outcome(self) -> list[Any]:
        if self.error is not None:
            raise self.error
        return self.result or []


class Batcher:
    """Runs ``run(key, frame)`` → one result per row, batching concurrent frames with equal keys."""

    def __init__(self, *, run: Callable[[Hashable, pd.DataFrame], list[Any]], max_rows: int = 256,
                 max_rows_by_key: Callable[[Hashable], int] | None = None) -> None:
        self.run = run
        self.max_rows = max_rows
        self.max_rows_by_key = max_rows_by_key
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[_Job]] = {}
        self._active: set[Hashable] = set()
        self.batches = 0  # counters for tests and benchmarks
        self.jobs = 0

    def submit(self, key: Hashable, frame: pd.DataFrame) -> list[Any]:
        job = _Job(frame)
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

    def _lead(self, key: Hashable) -> None:
        limit = self.max_rows_by_key(key) if self.max_rows_by_key else self.max_rows
        with self._lock:
            queue = self._queues[key]
            batch, rows = [], 0
            while queue and (not batch or rows + len(queue[0].frame) <= limit):
                rows += len(queue[0].frame)
                batch.append(queue.pop(0))
        try:
            self._run_batch(key, batch)
        finally:
            for job in batch:
                job.done = True
                job.event.set()
            with self._lock:
                queue = self._queues[key]
                if queue:
                    queue[0].lead = True
                    queue[0].event.set()
                else:
                    self._active.discard(key)

    def _run_batch(self, key: Hashable, batch: list[_Job]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        if len(batch) > 1:
            try:
                results = self.run(key, pd.concat([j.frame for j in batch], ignore_index=True))
                start = 0
                for job in batch:
                    job.result = results[start:start + len(job.frame)]
                    start += len(job.frame)
                return
            except Exception:  # one job's input broke the batch: run each alone, so errors stay with their owner
                pass
        for job in batch:
            try:
                job.result = self.run(key, job.frame)
            except Exception as e:  # handed to the job's own request thread, which re-raises it
                job.error = e
