"""Screening on a Ray cluster: the library's batches (shards) go to Ray actors, each of which
loads the model bundle once and parses, standardises, featurises and scores the shards it is
given; the driver reads the library, drops exact repeated lines, and merges the scored shards in
library order into the same bounded top-k as a local run (``pipeline.screen``), so the hits and
skipped-molecule files are the same, byte for byte.

A worker that dies mid-run (node lost, process killed, out of memory) costs only its shard: the
shard is re-queued on a fresh actor, and a shard's result is accepted once, so no molecule is
lost or counted twice. A shard that kills three workers in a row stops the screen with an error.

The bundle travels to the workers as bytes (its files, through the object store), so the nodes
need medassist installed but not the bundle directory. Shards carry the library rows' text;
results carry canonical SMILES and scores (the driver needs every canonical SMILES to drop
repeated structures across shards exactly as a local run does).

Example:
    >>> runner = RayShardRunner(bundle, address="auto", workers=None)   # connects or refuses
    >>> for shard, result in runner.run(jobs): ...
    >>> runner.close()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medassist.exceptions import BundleError, ConfigError, MedassistError
from medassist.registry.bundle import ModelBundle

#: Test hook: ``SHARD:MARKER`` makes the worker that gets shard SHARD kill its own process
#: (SIGKILL) the first time, leaving MARKER behind so the retry succeeds.
FAULT_ENV = "MEDASSIST_SCREEN_RAY_FAULT"
#: How many workers one shard may take down before the screen stops.
MAX_ATTEMPTS = 3


class ScreenWorkerError(MedassistError, RuntimeError):
    """A shard of the library could not be scored on the Ray cluster."""


class ShardScorer:
    """A Ray actor's body: the bundle, loaded once from its files' bytes, scores shards."""

    def __init__(self, files: dict[str, bytes], fault: str | None) -> None:
        import torch

        from medassist.pipeline.screen import keep_freed_memory
        from medassist.registry.bundle import load_bundle

        torch.set_num_threads(1)  # one thread per actor; the actors are the parallelism
        keep_freed_memory()  # as a local worker: batch arrays reuse freed heap, not fresh pages
        tmp = Path(tempfile.mkdtemp(prefix="medassist_bundle_"))
        try:
            for name, data in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            self.bundle = load_bundle(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.standardizer = self.bundle.featurizer.make_standardizer()
        self.fault = fault

    def ready(self) -> int:
        """The worker's process id, once the bundle is loaded."""
        return os.getpid()

    def score(self, shard: int, rows: list[int], texts: list[str], kind: str, canonical: bool) -> dict[str, Any]:
        """Featurize and score one shard as a local worker does (``pipeline.screen._score_chunk``:
        the same standardiser for every shard, the same forward batches)."""
        from medassist.featurizers.molecules import featurize_chunk
        from medassist.pipeline.molecules import bundle_predict_features
        from medassist.pipeline.screen import SCORE_BATCH

        if self.fault:
            at, marker = self.fault.split(":", 1)
            if int(at) == shard and not os.path.exists(marker):
                Path(marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        res = featurize_chunk(rows, texts, kind, featurizer=self.bundle.featurizer, canonical=canonical, standardizer=self.standardizer)
        if res["features"] is not None:
            res["pred"], res["spread"] = bundle_predict_features(self.bundle, res["features"], batch_size=SCORE_BATCH)
        else:
            res["pred"] = res["spread"] = None
        res["features"] = None  # only the scores travel back
        return res


def bundle_files(bundle: ModelBundle) -> dict[str, bytes]:
    """Every file of the bundle's directory, by relative path."""
    if bundle.path is None:
        raise BundleError("Screening on Ray needs a bundle loaded from a directory (its files are sent to the workers).")
    root = Path(bundle.path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_reachable(address: str) -> None:
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--ray {address}: expected HOST:PORT of a Ray cluster's head (e.g. 127.0.0.1:6379) or 'auto'.")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3).close()
    except OSError as e:
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster there ({e.strerror or e}); "
                          "start one with 'ray start --head' or check the address.") from e


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address``; True when this call connected
    (and so ``close`` should disconnect). Refuses in one line when no cluster answers."""
    _check_reachable(address)
    import logging

    import ray

    if ray.is_initialized():
        return False
    _ray_messages_to_stderr()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster ({first}); "
                          "start one with 'ray start --head' or check the address.") from e
    return True


def _ray_messages_to_stderr() -> None:
    """Ray's driver prints the cluster's error messages (e.g. "A worker died ...", which the
    screen handles and reports itself) to stdout, where ``--json`` writes the summary: send
    them to stderr instead."""
    import ray._private.worker as ray_worker

    show = getattr(ray_worker, "print_to_stdstream", None)
    if show is None or getattr(show, "_medassist_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        show({**data, "is_err": True}, ignore_prefix)

    to_stderr._medassist_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


class RayShardRunner:
    """Scores ``(shard, ShardJob)`` pairs on Ray actors and yields ``(shard, result)`` in shard
    order, with at most ``2 × workers`` shards in memory; a shard whose actor died is re-run."""

    def __init__(self, bundle: ModelBundle, *, address: str, workers: int | None) -> None:
        self.restarts = 0
        self._actors: list[Any] = []
        self._owns = connect(address)
        import ray

        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.n_workers = workers or max(1, cpus)
            self._files = ray.put(bundle_files(bundle))
            self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(ShardScorer)
            self._fault = os.environ.get(FAULT_ENV) or None
            self._actors = [self._new_actor() for _ in range(self.n_workers)]
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        """Wait until every actor has loaded the bundle, so a node that cannot (medassist missing,
        a bundle it cannot read) stops the screen before the library is read, and the screen's
        clock starts with workers ready."""
        import ray
        from ray.exceptions import RayActorError

        try:
            ray.get([a.ready.remote() for a in self._actors])
        except RayActorError as e:
            first = (str(e).strip().splitlines() or ["worker died"])[0]
            raise ScreenWorkerError(f"a Ray worker could not load the bundle: {first}") from e

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._files, self._fault)

    def run(self, jobs: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        import ray
        from ray.exceptions import RayActorError

        window = 2 * self.n_workers
        waiting: dict[int, Any] = {}  # shard -> job, until its result has been handed on
        results: dict[int, dict[str, Any]] = {}
        attempts: dict[int, int] = {}
        queue: deque[int] = deque()
        idle = list(range(len(self._actors)))
        inflight: dict[Any, tuple[int, int]] = {}  # ObjectRef -> (shard, actor slot)
        jobs = iter(jobs)
        exhausted = False
        next_out = 0
        while True:
            while not exhausted and len(waiting) < window:
                item = next(jobs, None)
                if item is None:
                    exhausted = True
                    break
                shard, job = item
                waiting[shard] = job
                queue.append(shard)
            while queue and idle:
                shard, slot = queue.popleft(), idle.pop()
                job = waiting[shard]
                ref = self._actors[slot].score.remote(shard, job.rows, job.texts, job.kind, job.canonical)
                inflight[ref] = (shard, slot)
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                shard, slot = inflight.pop(ref)
                try:
                    res = ray.get(ref)
                except RayActorError as e:
                    attempts[shard] = attempts.get(shard, 0) + 1
                    if attempts[shard] >= MAX_ATTEMPTS:
                        first = (str(e).strip().splitlines() or ["worker died"])[0]
                        raise ScreenWorkerError(f"shard {shard} (library rows from {self._first_row(waiting[shard])}) "
                                                f"took down {MAX_ATTEMPTS} Ray workers; last: {first}") from e
                    ray.kill(self._actors[slot], no_restart=True)
                    self._actors[slot] = self._new_actor()
                    self.restarts += 1
                    queue.appendleft(shard)  # re-queued first: the merge waits for it
                    idle.append(slot)
                    continue
                idle.append(slot)
                if shard in waiting and shard not in results:  # a shard's result is accepted once
                    results[shard] = res
            while next_out in results:
                waiting.pop(next_out)
                yield next_out, results.pop(next_out)
                next_out += 1

    @staticmethod
    def _first_row(job: Any) -> str:
        return str(job.rows[0]) if job.rows else "?"

    def close(self) -> None:
        import ray

        for actor in self._actors:
            ray.kill(actor, no_restart=True)  # a no-op for an actor already gone
        self._actors = []
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False
