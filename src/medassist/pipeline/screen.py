"""Library screening with a screening bundle: stream a library of any size in batches (bounded
memory), parse/standardise/featurize in worker processes, score in the main process, keep the
best ``top`` molecules in a heap, and hand back the ranked shortlist with score, uncertainty,
applicability-domain flag, QED and medicinal-chemistry filters (Lipinski, Veber, PAINS, Brenk).

Only molecules that enter the shortlist pay for QED, filters and the similarity search, so a
library costs about what parsing, standardising, featurizing and scoring it costs.
An exact repeat of an earlier library line is never parsed or scored: it takes its first
occurrence's outcome (the same unreadable-molecule reason, or "duplicate"), exactly as if it had
been standardised and then found to repeat a structure. Shards can run on local processes or on
a Ray cluster (``ray_address``, see ``pipeline.screen_ray``) with the same result.

Results are values: ``iter_screen`` yields a ``ScreenChunk`` per batch (progress and that batch's
skipped molecules) and ``screen`` returns a ``ScreenResult`` (hits table, skipped rows, summary).
Drawing progress and writing files belong to the caller (``ScreenResult.write`` writes the CSVs
the CLI has always written).

Example:
    >>> result = screen(bundle, Path("library.smi"), top=100, filters=["lipinski", "pains"],
    ...                 on_progress=lambda chunk: print(chunk.n_read))
    >>> result.hits.head(), result.summary.skipped_by_reason
    >>> result.write(Path("hits.csv"))
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from medassist.data.io.molecules import RawBatch, iter_raw_batches
from medassist.data.io.tables import write_table
from medassist.evaluation.applicability import ApplicabilityDomain
from medassist.exceptions import BundleError, ConfigError, EmptyDataError
from medassist.featurizers.molecules import featurize_chunk, init_worker
from medassist.pipeline.molecules import bundle_predict_features, score_columns
from medassist.registry.bundle import ModelBundle
from medassist.types import SCORE_DECIMALS
from medassist.validation import check_number

FILTERS = ("lipinski", "veber", "pains", "brenk")


def parse_filters(text: str | list[str] | None) -> list[str]:
    """``"lipinski,pains"`` → ``["lipinski", "pains"]``; unknown names raise with a suggestion."""
    from medassist.options import unknown_name_error

    if not text:
        return []
    items = text if isinstance(text, list) else str(text).split(",")
    names = [i.strip().lower() for i in items if i.strip()]
    for n in names:
        if n not in FILTERS:
            raise unknown_name_error(n, list(FILTERS), kind="filter")
    return list(dict.fromkeys(names))


class MolFilters:
    """Rule-of-five, Veber and substructure-alert filters with the reason for each failure."""

    def __init__(self, *, names: list[str]) -> None:
        self.names = names
        self._catalogs: dict[str, Any] = {}

    def _catalog(self, name: str):
        if name not in self._catalogs:
            from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

            params = FilterCatalogParams()
            params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS if name == "pains" else FilterCatalogParams.FilterCatalogs.BRENK)
            self._catalogs[name] = FilterCatalog(params)
        return self._catalogs[name]

    def apply(self, mol: Any) -> dict[str, Any]:
        from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

        out: dict[str, Any] = {}
        for name in self.names:
            if name == "lipinski":
                # rdkit's stubs leave out descriptors that rdkit defines as lambdas (MolWt, MolLogP, NumH*).
                checks = [("MW", Descriptors.MolWt(mol), 500), ("LogP", Crippen.MolLogP(mol), 5),  # type: ignore[attr-defined]
                          ("HBD", Lipinski.NumHDonors(mol), 5), ("HBA", Lipinski.NumHAcceptors(mol), 10)]  # type: ignore[attr-defined]
                bad = [f"{n} {v:.4g}>{lim}" for n, v, lim in checks if v > lim]
                out["lipinski_pass"], out["lipinski_alert"] = len(bad) <= 1, "; ".join(bad)  # Ro5 allows one violation
            elif name == "veber":
                checks = [("RotB", rdMolDescriptors.CalcNumRotatableBonds(mol), 10), ("TPSA", rdMolDescriptors.CalcTPSA(mol), 140)]
                bad = [f"{n} {v:.4g}>{lim}" for n, v, lim in checks if v > lim]
                out["veber_pass"], out["veber_alert"] = not bad, "; ".join(bad)
            else:
                matches = self._catalog(name).GetMatches(mol)
                alerts = sorted({m.GetDescription() for m in matches})
                out[f"{name}_pass"], out[f"{name}_alert"] = not alerts, "; ".join(alerts)
        if self.names:
            out["passes_filters"] = all(out[f"{n}_pass"] for n in self.names)
        return out


@dataclass
class ScreenSummary:
    """What a screen did: counts, skipped molecules by reason, speed and where the hits went
    (``out``, once written)."""

    out: Path | None = None
    n_read: int = 0
    n_scored: int = 0
    n_duplicates: int = 0
    n_failed_filters: int = 0
    n_hits: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1
    #: Ray runs: workers lost mid-run whose shard was re-run on a fresh worker.
    worker_restarts: int = 0

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def throughput(self) -> float:
        return self.n_read / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"out": None if self.out is None else str(self.out), "read": self.n_read, "scored": self.n_scored, "duplicates": self.n_duplicates,
                "skipped": self.n_skipped, "skipped_by_reason": self.skipped_by_reason, "skipped_examples": self.skipped_examples,
                "failed_filters": self.n_failed_filters, "hits": self.n_hits, "seconds": round(self.seconds, 3),
                "molecules_per_second": round(self.throughput, 1), "workers": self.workers, "worker_restarts": self.worker_restarts}


def bundle_targets(bundle: ModelBundle) -> list[str]:
    """The names of the targets a molecule bundle scores, in the order of its outputs."""
    names = bundle.schema.extras["targets"]
    if not isinstance(names, list):
        raise BundleError(f"The bundle's schema should list its target names; got {names!r}.")
    return [str(n) for n in names]


def _frame_batches(frame: pd.DataFrame, smiles_column: str | None, batch_size: int) -> Iterator[RawBatch]:
    from medassist.data.io.molecules import find_smiles_column

    col = find_smiles_column(frame, smiles_column, source="library")
    others = frame.drop(columns=[col])
    for s in range(0, len(frame), batch_size):
        part = frame.iloc[s: s + batch_size]
        cols = others.iloc[s: s + batch_size].to_dict("records") if len(others.columns) else [{} for _ in range(len(part))]
        yield RawBatch(list(range(s + 1, s + len(part) + 1)), part[col].tolist(), "smiles", cols)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class SkippedRow(NamedTuple):
    """A molecule that was not scored: its library row (from 1), the input (at most 300
    characters) and why."""

    row: int
    input: str
    reason: str


SKIPPED_COLUMNS = list(SkippedRow._fields)


@dataclass(frozen=True, kw_only=True)
class ScreenChunk:
    """One batch of the library, screened: running totals and this batch's skipped molecules."""

    n_rows: int
    n_read: int
    n_scored: int
    n_skipped: int
    seconds: float
    skipped: list[SkippedRow]


@dataclass(kw_only=True)
class ScreenResult:
    """The ranked shortlist (``hits``: one row per molecule, best first; ``rank`` and
    ``input_row`` int, scores float, ``in_domain`` and the ``*_pass`` columns bool), every
    skipped molecule with its reason (when kept), the summary and the best hits' atom-attribution
    maps (PNG bytes, rank 1 first)."""

    hits: pd.DataFrame
    skipped: pd.DataFrame
    summary: ScreenSummary
    explanations: list[bytes] = field(default_factory=list)

    def hits_table(self) -> pd.DataFrame:
        """The hits as the CSV shows them (``in_domain`` as yes/no)."""
        table = self.hits.copy()
        table["in_domain"] = table["in_domain"].map({True: "yes", False: "no"})
        return table

    def write(self, out: Path, *, skipped_out: Path | None = None, explain_dir: Path | None = None) -> None:
        """Write the hits CSV (and the skipped molecules' CSV, and the maps as ``rank_0001.png``...)."""
        out = Path(out)
        if skipped_out is not None:
            write_table(self.skipped, skipped_out)
        write_table(self.hits_table(), out)
        self.summary.out = out
        if explain_dir is not None and self.explanations:
            Path(explain_dir).mkdir(parents=True, exist_ok=True)
            for k, png in enumerate(self.explanations):
                (Path(explain_dir) / f"rank_{k + 1:04d}.png").write_bytes(png)


def screen(bundle: ModelBundle, library: Path | pd.DataFrame, *, on_progress: Callable[[ScreenChunk], None] | None = None,
           **options: Any) -> ScreenResult:
    """Screen ``library`` to the end and return the ranked shortlist; ``on_progress`` is called
    with each batch's ``ScreenChunk``. ``options`` are those of ``iter_screen``."""
    run = iter_screen(bundle, library, **options)
    while True:
        try:
            chunk = next(run)
        except StopIteration as done:
            return done.value
        if on_progress is not None:
            on_progress(chunk)


def iter_screen(
    bundle: ModelBundle, library: Path | pd.DataFrame, *, top: int = 100, filters: list[str] | None = None,
    batch_size: int = 2048, workers: int | None = None, smiles_column: str | None = None, rank: str = "highest",
    keep_duplicates: bool = False, exclude_failing: bool = False, task: int = 0, keep_skipped: bool = True,
    explain_top: int = 0, ray_address: str | None = None,
) -> Generator[ScreenChunk, None, ScreenResult]:
    """Screen ``library`` (a .smi/.sdf/.csv path, or a table) batch by batch.

    Yields a ``ScreenChunk`` after each batch; the generator's return value (what ``screen``
    returns) is the ``ScreenResult``. Bad options raise before the library is read.

    Args:
        top: how many molecules to keep (by score; classification: positive-class probability).
        filters: any of ``lipinski``, ``veber``, ``pains``, ``brenk``; each gets a pass column and
            the alert that failed.
        exclude_failing: leave molecules that fail a filter out of the shortlist (they are counted).
        rank: ``highest`` or ``lowest`` score first.
        keep_duplicates: score repeated structures again (default: the first occurrence only).
        workers: featurization processes (default: every core; 1 runs in this process).
        keep_skipped: keep every skipped molecule (row, input, reason) in ``ScreenResult.skipped``
            (off: only the counts and three examples per reason, for memory on huge libraries).
        explain_top: draw a similarity map for the best ``explain_top`` hits.
        ray_address: score the batches on a Ray cluster (``auto`` or ``HOST:PORT``) instead of
            local processes; ``workers`` is then the number of Ray actors (default: one per CPU
            of the cluster). The output is the same as a local run's (``pipeline.screen_ray``).

    Ties in score are broken by library row (the earlier row ranks first), so the shortlist does
    not depend on how the library was split into batches or workers.
    """
    owner = "screen"
    check_number(top, name="top", owner=owner, low=1, integer=True)
    check_number(batch_size, name="batch_size", owner=owner, low=1, integer=True)
    if rank not in ("highest", "lowest"):
        raise ConfigError(f"The 'rank' option of screen must be 'highest' or 'lowest'. Got {rank!r} instead.")
    filters = parse_filters(filters)
    if exclude_failing and not filters:
        raise ConfigError("--exclude-failing needs --filters (which filters should a hit pass?).")
    n_tasks = len(bundle_targets(bundle))
    if not 0 <= task < n_tasks:
        raise ConfigError(f"--task-index must be in 0..{n_tasks - 1}.")
    if workers is not None:
        workers = int(check_number(workers, name="workers", owner=owner, low=1, integer=True))
    if ray_address is None and workers is None:
        workers = default_workers()
    return (yield from _screen(bundle, library, top=top, filters=filters, batch_size=batch_size, workers=workers,
                               smiles_column=smiles_column, rank=rank, keep_duplicates=keep_duplicates,
                               exclude_failing=exclude_failing, task=task, keep_skipped=keep_skipped, explain_top=explain_top,
                               ray_address=ray_address))


class ShardJob(NamedTuple):
    """The part of a library batch that needs parsing and scoring: its first occurrences of each
    input text (1-based library ``rows``, ``texts``, ``kind``) and whether the worker should
    return canonical SMILES."""

    rows: list[int]
    texts: list[str]
    kind: str
    canonical: bool


#: A runner scores ``(index, ShardJob)`` pairs and yields ``(index, result)`` in index order;
#: a result is ``featurize_chunk``'s dict, with ``pred``/``spread`` when the worker scored it.
ShardRunner = Callable[[Iterator[tuple[int, ShardJob]]], Iterator[tuple[int, dict[str, Any]]]]

_PENDING = object()


def _plan(batches: Iterator[RawBatch], *, dedupe: bool, texts_seen: dict[str, Any],
          planned: deque) -> Iterator[tuple[int, ShardJob]]:
    """Split each batch into the rows to score and the rows whose exact input text already came
    (their outcome is the first occurrence's), so repeated lines are never parsed or scored."""
    for k, b in enumerate(batches):
        if not dedupe:
            planned.append((b, list(range(len(b.rows)))))
            yield k, ShardJob(b.rows, b.texts, b.kind, False)
            continue
        fresh: list[int] = []
        for i, text in enumerate(b.texts):
            if text not in texts_seen:
                texts_seen[text] = _PENDING
                fresh.append(i)
        planned.append((b, fresh))
        yield k, ShardJob([b.rows[i] for i in fresh], [b.texts[i] for i in fresh], b.kind, True)


def _local_runner(bundle: ModelBundle, workers: int) -> ShardRunner:
    fz = bundle.featurizer

    def run(jobs: Iterator[tuple[int, ShardJob]]) -> Iterator[tuple[int, dict[str, Any]]]:
        if workers <= 1:
            std = fz.make_standardizer()
            for k, j in jobs:
                yield k, featurize_chunk(j.rows, j.texts, j.kind, featurizer=fz, canonical=j.canonical, standardizer=std)
            return
        # fork (Linux): workers start at once with the parent's modules and the model already in
        # memory, and score their own chunks, so only scores travel back and the parent only
        # reads the file and keeps the heap. Elsewhere (spawn) workers featurize and the parent
        # scores.
        fork = "fork" in mp.get_all_start_methods()
        ctx = mp.get_context("fork" if fork else "spawn")
        _FORKED["bundle"] = bundle
        try:
            pool = (ProcessPoolExecutor(max_workers=workers, mp_context=ctx) if fork else
                    ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(fz.to_dict(),)))
            with pool:
                pending: deque = deque()
                for k, j in jobs:
                    job = (_score_chunk, j.rows, j.texts, j.kind, j.canonical) if fork else \
                        (featurize_chunk, j.rows, j.texts, j.kind, None, j.canonical)
                    pending.append((k, pool.submit(*job)))
                    if len(pending) >= 2 * workers:  # a bounded window keeps memory flat
                        kk, fut = pending.popleft()
                        yield kk, fut.result()
                while pending:
                    kk, fut = pending.popleft()
                    yield kk, fut.result()
        finally:
            _FORKED.clear()

    return run


def _screen(
    bundle: ModelBundle, library: Path | pd.DataFrame, *, top: int, filters: list[str], batch_size: int, workers: int | None,
    smiles_column: str | None, rank: str, keep_duplicates: bool, exclude_failing: bool, task: int, keep_skipped: bool,
    explain_top: int, ray_address: str | None = None,
) -> Generator[ScreenChunk, None, ScreenResult]:
    sign = 1.0 if rank == "highest" else -1.0
    cols = score_columns(bundle)
    mf = MolFilters(names=filters)
    std = bundle.featurizer.make_standardizer()
    summary = ScreenSummary(workers=workers or 1)
    skipped_counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    skipped_rows: list[SkippedRow] = []
    chunk_skipped: list[SkippedRow] = []
    seen: dict[str, int] = {}
    # exact input text -> its first occurrence's canonical SMILES, or ("skip", reason)
    texts_seen: dict[str, Any] = {}
    # (key, -row): the heap's smallest is the worst hit; on equal scores the later row goes first,
    # so the shortlist is the top ``top`` by (score, earlier row) whatever the batching.
    heap: list[tuple[float, int, dict[str, Any]]] = []

    def skip(row: int, text: str | None, reason: str) -> None:
        cat = reason.split(":", 1)[0]
        skipped_counts[cat] += 1
        if len(examples.setdefault(cat, [])) < 3:
            examples[cat].append(f"row {row}: {reason}")
        chunk_skipped.append(SkippedRow(row, str(text)[:300], reason))

    def offer(row: int, p: int, pos: int, smi: str | None, batch: RawBatch, pred: np.ndarray, spread: np.ndarray | None,
              key: float) -> None:
        """Put a scored molecule into the shortlist if it ranks among the best ``top``."""
        order = (key, -row)
        if len(heap) >= top and order <= heap[0][:2]:
            return
        if smi is None and exclude_failing:
            smi = _canonical(batch.texts[p], batch.kind, std)
        # without a SMILES (every line scored, none canonicalised in the workers), the text is kept
        # and only the final shortlist is canonicalised: repeats of a good molecule enter the
        # heap again and again, and canonicalising each cost the parent more than reading the file
        rec = {"input_row": row, "columns": batch.columns[p], "smiles": smi, "text": None if smi is not None else batch.texts[p],
               "kind": batch.kind, "pred": pred[pos], "spread": None if spread is None else spread[pos]}
        if exclude_failing:
            rec["filters"] = _filter(mf, smi or "")
            if not rec["filters"]["passes_filters"]:
                summary.n_failed_filters += 1
                return
        item = (key, -row, rec)
        if len(heap) < top:
            heapq.heappush(heap, item)
        else:
            heapq.heapreplace(heap, item)

    def done(batch: RawBatch) -> ScreenChunk:
        if keep_skipped:
            skipped_rows.extend(chunk_skipped)
        return ScreenChunk(n_rows=len(batch.rows), n_read=summary.n_read, n_scored=summary.n_scored,
                           n_skipped=sum(skipped_counts.values()), seconds=time.perf_counter() - t0, skipped=list(chunk_skipped))

    def consume_every_line(batch: RawBatch, res: dict[str, Any], pred: Any, spread: Any, keys: Any) -> ScreenChunk:
        """``keep_duplicates``: every line was parsed and scored, so only molecules that can beat
        the current shortlist are looked at one by one (the rest are set aside in numpy; the
        shortlist is the same as offering every molecule in turn)."""
        for row, text, reason in res["skipped"]:
            skip(row, text, reason)
        ok = res["ok"]
        if not ok:
            return done(batch)
        rows = np.asarray(batch.rows, dtype=np.int64)[np.asarray(ok, dtype=np.int64)]
        summary.n_scored += len(ok)
        finite = np.isfinite(keys)
        cand = np.flatnonzero(finite)
        if len(heap) >= top:
            worst_key, worst_neg_row = heap[0][0], heap[0][1]
            k, r = keys[cand], -rows[cand]
            cand = cand[(k > worst_key) | ((k == worst_key) & (r > worst_neg_row))]
        for j in np.flatnonzero(~finite).tolist():
            skip(int(rows[j]), None, "no score: the model returned NaN")
        for j in cand.tolist():
            offer(int(rows[j]), ok[j], j, None, batch, pred, spread, float(keys[j]))
        return done(batch)

    def consume(batch: RawBatch, fresh: list[int], res: dict[str, Any]) -> ScreenChunk:
        chunk_skipped.clear()
        summary.n_read += len(batch.rows)
        ok = res["ok"]
        pred = spread = keys = None
        if ok:
            if "pred" in res:  # scored in a worker
                pred, spread = res["pred"], res["spread"]
            else:
                pred, spread = bundle_predict_features(bundle, res["features"], batch_size=SCORE_BATCH)
            keys = sign * pred[:, task]
        if keep_duplicates:
            return consume_every_line(batch, res, pred, spread, keys)
        outcome: dict[int, Any] = {}  # fresh row -> position in res, or ("skip", text, reason)
        for row, text, reason in res["skipped"]:
            outcome[row] = ("skip", text, reason)
        for j, i in enumerate(ok):
            outcome[batch.rows[fresh[i]]] = j
        bad: list[tuple[int, str, str]] = []
        good: list[tuple[int, int, int | None, str | None]] = []  # (row, position in batch, position in res, smiles)
        fresh_rows = {batch.rows[p] for p in fresh}
        for p, row in enumerate(batch.rows):
            if row in fresh_rows:
                o = outcome[row]
                if isinstance(o, tuple):
                    bad.append((row, o[1], o[2]))
                    texts_seen[batch.texts[p]] = ("skip", o[2])
                else:
                    smi = res["smiles"][o]
                    good.append((row, p, o, smi))
                    texts_seen[batch.texts[p]] = smi
            else:  # an exact repeat of an earlier line: the first occurrence's outcome, unparsed
                first = texts_seen[batch.texts[p]]
                if isinstance(first, tuple):
                    bad.append((row, batch.texts[p] if batch.kind == "smiles" else f"record {row}", first[1]))
                else:
                    good.append((row, p, None, first))
        for row, text, reason in bad:
            skip(row, text, reason)
        for row, p, pos, smi in good:
            if smi is not None:
                first_row = seen.get(smi)
                if first_row is not None:
                    summary.n_duplicates += 1
                    skip(row, smi, f"duplicate: same standardised structure as row {first_row}")
                    continue
                seen[smi] = row
            if pos is None or keys is None or pred is None:
                raise RuntimeError(f"row {row}: a repeated line whose first occurrence was not scored (a bug in screen).")
            summary.n_scored += 1
            key = float(keys[pos])
            if not np.isfinite(key):
                skip(row, smi, "no score: the model returned NaN")
                continue
            offer(row, p, pos, smi, batch, pred, spread, key)
        return done(batch)

    runner: ShardRunner
    ray_runner = None
    if ray_address is not None:
        from medassist.pipeline.screen_ray import RayShardRunner

        ray_runner = RayShardRunner(bundle, address=ray_address, workers=workers)  # connects, or refuses in one line
        runner = ray_runner.run
        summary.workers = ray_runner.n_workers
    source = library if isinstance(library, pd.DataFrame) else Path(library)
    batches = (_frame_batches(source, smiles_column, batch_size) if isinstance(source, pd.DataFrame)
               else iter_raw_batches(source, batch_size=batch_size, smiles_column=smiles_column))
    if ray_address is None:
        _warm_up(bundle)
    t0 = time.perf_counter()
    try:
        batches = iter(batches)
        if ray_address is None:
            head = list(itertools.islice(batches, 2))
            n = workers or 1
            if len(head) < 2 and (not head or len(head[0].rows) < batch_size):
                n = 1  # one short batch: starting worker processes would cost more than it saves
            summary.workers = n
            runner = _local_runner(bundle, n)
            batches = itertools.chain(head, batches)
        planned: deque = deque()
        for _, res in runner(_plan(batches, dedupe=not keep_duplicates, texts_seen=texts_seen, planned=planned)):
            b, fresh = planned.popleft()
            yield consume(b, fresh, res)
    finally:
        if ray_runner is not None:
            summary.worker_restarts = ray_runner.restarts
            ray_runner.close()
    summary.seconds = time.perf_counter() - t0
    summary.skipped_by_reason = dict(skipped_counts)
    summary.skipped_examples = examples
    if summary.n_read == 0:
        name = "library" if isinstance(library, pd.DataFrame) else library
        raise EmptyDataError(f"{name}: no molecules found in the library.")
    best = sorted(heap, key=lambda it: (-it[0], -it[1]))
    for it in best:
        if it[2]["smiles"] is None:
            it[2]["smiles"] = _canonical(it[2]["text"], it[2]["kind"], std)
    hits, maps = _hits_table(bundle, best, cols, task, mf, explain_top)
    summary.n_hits = len(hits)
    return ScreenResult(hits=hits, skipped=pd.DataFrame(skipped_rows, columns=SKIPPED_COLUMNS), summary=summary,
                        explanations=maps)


_FORKED: dict[str, Any] = {}
#: Molecules per forward pass. A D-MPNN shares more bond states in a larger batch (see
#: ``models.molecules.MessagePlan``); 1,024 keeps its largest temporary arrays near 25 MB.
SCORE_BATCH = 1024


def _warm_up(bundle: ModelBundle) -> None:
    """Score one molecule before the clock starts, so that RDKit's modules, the fingerprint
    generator and the network's first call are loaded once here and forked workers start with
    them (the RDKit floor imports RDKit before its clock too; Ray actors load the bundle before)."""
    from medassist.data.io.molecules import prepare_molecule

    fz = bundle.featurizer
    mol = prepare_molecule("CCO", kind="smiles", standardizer=fz.make_standardizer(), canonical=False)[0]
    if mol is not None:  # (a standardiser that refuses ethanol: nothing to warm)
        bundle_predict_features(bundle, fz.transform([mol]), batch_size=SCORE_BATCH)


def _score_chunk(rows: list[int], texts: list[str], kind: str, canonical: bool) -> dict[str, Any]:
    """Worker of a forked pool: featurize and score a chunk with the bundle the parent held."""
    import torch

    bundle = _FORKED["bundle"]
    if not _FORKED.get("threads"):
        torch.set_num_threads(1)  # one thread per worker process; the workers are the parallelism
        keep_freed_memory()
        _FORKED["threads"] = True
        _FORKED["standardizer"] = bundle.featurizer.make_standardizer()
    res = featurize_chunk(rows, texts, kind, featurizer=bundle.featurizer, canonical=canonical, standardizer=_FORKED["standardizer"])
    if res["features"] is not None:
        res["pred"], res["spread"] = bundle_predict_features(bundle, res["features"], batch_size=SCORE_BATCH)
    res["features"] = None  # only the scores travel back
    return res


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(limit: int = 64 << 20) -> None:
    """Let a worker's malloc reuse the memory of freed batch arrays instead of handing it back
    to the kernel and faulting it in again for the next chunk.

    glibc serves blocks above its mmap threshold (at most 32 MB by default) with fresh mmaps, so
    every large tensor of a chunk cost tens of thousands of page faults (most of a D-MPNN
    worker's system time). Blocks up to ``limit`` now come from the heap, which keeps up to
    ``limit`` of free memory (a larger limit lets the heap fragment and grow over a long
    screen). A no-op where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, limit)
    mallopt(_M_TRIM_THRESHOLD, limit)


def _canonical(text: str, kind: str, std: Any) -> str:
    from medassist.data.io.molecules import prepare_molecule

    return prepare_molecule(text, kind=kind, standardizer=std)[1] or ""


def _filter(mf: MolFilters, smiles: str) -> dict[str, Any]:
    from rdkit import Chem

    return mf.apply(Chem.MolFromSmiles(smiles))


def _hits_table(bundle: ModelBundle, items: list, cols: list[tuple[str, str]], task: int, mf: MolFilters,
                explain_top: int) -> tuple[pd.DataFrame, list[bytes]]:
    from rdkit import Chem
    from rdkit.Chem import QED

    recs = [it[2] for it in items]
    mols = [Chem.MolFromSmiles(r["smiles"]) for r in recs]
    ad = ApplicabilityDomain.from_bundle(bundle)
    sim, _ = ad.similarity(mols)
    ours = ["rank", "smiles_canonical", *[c for pair in cols for c in pair], "ad_similarity", "in_domain", "qed"]
    ours += [c for n in mf.names for c in (f"{n}_pass", f"{n}_alert")] + (["passes_filters"] if mf.names else []) + ["input_row"]
    classification = bundle.schema.extras["kind"] == "binary"
    rows = []
    for k, (r, m) in enumerate(zip(recs, mols)):
        lib = {(f"library_{c}" if c in ours else c): v for c, v in r["columns"].items()}
        row: dict[str, Any] = {"rank": k + 1, **lib, "smiles_canonical": r["smiles"]}
        for t, (sc, unc) in enumerate(cols):
            row[sc] = round(float(r["pred"][t]), SCORE_DECIMALS)
            row[unc] = None if r["spread"] is None or not np.isfinite(r["spread"][t]) else round(float(r["spread"][t]), SCORE_DECIMALS)
        row["ad_similarity"] = round(float(sim[k]), 4)
        row["in_domain"] = bool(sim[k] >= ad.threshold)
        row["qed"] = round(float(QED.qed(m)), 4)
        row.update(r.get("filters") or mf.apply(m))
        row["input_row"] = r["input_row"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=ours)
    if classification:
        frame.attrs["score_meaning"] = "probability of the positive class"
    maps = []
    if explain_top > 0 and recs:
        from medassist.explain.molecules import atom_attributions, similarity_map_png

        for k, m in enumerate(mols[:explain_top]):
            maps.append(similarity_map_png(m, atom_attributions(bundle, m, task=task), legend=f"rank {k + 1}"))
    return frame, maps
