"""Micro-batching: concurrent requests share batches, results stay with their owners, and one
bad request does not fail the others."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from medassist.exceptions import DataError
from medassist.service.batching import Batcher


def test_concurrent_jobs_are_batched_and_each_gets_its_own_rows():
    calls = []

    def run(key, frame):
        calls.append(len(frame))
        time.sleep(0.05)  # a slow model: later arrivals queue up meanwhile
        if (frame["x"] < 0).any():
            raise DataError(f"row {int((frame['x'] < 0).to_numpy().argmax()) + 1}: negative")
        return [f"{key}:{x}" for x in frame["x"]]

    batcher = Batcher(run=run, max_rows=100)
    out: dict[int, object] = {}

    def client(i: int) -> None:
        try:
            out[i] = batcher.submit("k", pd.DataFrame({"x": [i, i]}) if i != 7 else pd.DataFrame({"x": [-1]}))
        except DataError as e:
            out[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
        time.sleep(0.002)
    for t in threads:
        t.join()
    for i in range(20):
        if i == 7:
            assert isinstance(out[i], DataError) and "row 1" in str(out[i])
        else:
            assert out[i] == [f"k:{i}", f"k:{i}"]
    assert batcher.jobs >= 20 and batcher.batches < 20  # some requests shared a batch
    assert max(calls) > 2


def test_a_lone_request_runs_at_once_and_errors_reach_the_caller():
    batcher = Batcher(run=lambda key, frame: (_ for _ in ()).throw(DataError("bad value")), max_rows=10)
    with pytest.raises(DataError, match="bad value"):
        batcher.submit("k", pd.DataFrame({"x": [1]}))
    ok = Batcher(run=lambda key, frame: list(frame["x"] * 2), max_rows=10)
    assert ok.submit("k", pd.DataFrame({"x": [1, 2]})) == [2, 4]
    assert ok.batches == 1


def test_finish_runs_once_per_batch_before_any_job_is_released_and_its_errors_stay_with_their_owner():
    finished: list[list[object]] = []
    released_before_finish = []
    state = {"finishing": False}

    def run(key, frame):
        time.sleep(0.03)
        return list(frame["x"])

    calls: list[int] = []

    def finish(key, done):
        metas = [meta for meta, _ in done]
        calls.append(len(metas))
        if "bad" in metas and len(done) > 1:
            raise RuntimeError("one record refused")  # the whole batch's transaction fails ...
        if metas == ["bad"]:
            raise RuntimeError("refused")  # ... then each job alone: only its owner sees the error
        state["finishing"] = True
        finished.append(metas)
        time.sleep(0.01)
        state["finishing"] = False
        return [(results, f"recorded:{meta}") for meta, results in done]

    batcher = Batcher(run=run, max_rows=100, finish=finish)
    out: dict[int, object] = {}

    def client(i: int) -> None:
        try:
            result = batcher.submit("k", pd.DataFrame({"x": [i]}), "bad" if i == 5 else i)
            released_before_finish.append(state["finishing"])
            out[i] = result
        except RuntimeError as e:
            out[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert isinstance(out[5], RuntimeError)
    for i in range(12):
        if i != 5:
            assert out[i] == ([i], f"recorded:{i}")
    assert sorted(m for batch in finished for m in batch) == [i for i in range(12) if i != 5]  # each recorded once
    assert max(calls) > 1  # jobs of one batch went to finish together (one transaction)


def test_event_loop_jobs_batch_with_each_other_and_with_thread_jobs_and_keep_their_own_results():
    import asyncio

    model_threads: set[str] = set()

    def run(key, frame):
        model_threads.add(threading.current_thread().name)
        time.sleep(0.03)
        if (frame["x"] < 0).any():
            raise DataError("negative")
        return list(frame["x"] * 10)

    batcher = Batcher(run=run, max_rows=100, finish=lambda key, done: [(r, meta) for meta, r in done], one_thread=True)
    from_threads: dict[int, object] = {}

    def thread_client(i: int) -> None:
        from_threads[i] = batcher.submit("k", pd.DataFrame({"x": [i]}), meta=f"t{i}")

    async def main() -> list[object]:
        async def one(i: int) -> object:
            try:
                return await batcher.submit_async("k", pd.DataFrame({"x": [i] if i != 5 else [-1]}), meta=f"a{i}")
            except DataError as e:
                return e

        threads = [threading.Thread(target=thread_client, args=(100 + i,)) for i in range(5)]
        for t in threads:
            t.start()
        out = await asyncio.gather(*(one(i) for i in range(30)))
        for t in threads:
            t.join()
        return out

    out = _run_on_own_loop(main)
    for i, r in enumerate(out):
        if i == 5:
            assert isinstance(r, DataError)  # one bad job fails alone
        else:
            assert r == ([i * 10], f"a{i}")
    assert from_threads == {100 + i: ([(100 + i) * 10], f"t{100 + i}") for i in range(5)}
    assert batcher.jobs == 35 and batcher.batches < 35  # they shared batches
    assert model_threads == {n for n in model_threads if n.startswith("medassist-model")} and len(model_threads) == 1


def test_event_loop_jobs_whose_batch_cannot_be_joined_each_run_alone():
    import asyncio

    class Unlucky(Exception):
        pass

    def concat(parts):
        raise Unlucky("concat broke")

    batcher = Batcher(run=lambda key, frame: list(frame["x"]), max_rows=10, concat=concat)

    async def main() -> None:
        # a lone job never concatenates; jobs that share a batch do, and then each runs alone
        assert await batcher.submit_async("k", pd.DataFrame({"x": [1]})) == [1]
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit_async("k", pd.DataFrame({"x": [i]})) for i in range(3))),
                                         timeout=10)
        assert results == [[0], [1], [2]]

    _run_on_own_loop(main)


def _run_on_own_loop(main):
    """``asyncio.run(main())`` on a thread of its own: another test (a browser session) may have
    left an event loop running on this one."""
    import asyncio

    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as e:  # handed back to the test's thread
            box["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the event loop did not finish in 60 s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")
