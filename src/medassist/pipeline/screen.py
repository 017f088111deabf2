"""Library screening with a screening bundle: stream a library of any size in batches (bounded
memory), parse/standardise/featurize in worker processes, score in the main process, keep the
best ``top`` molecules in a heap, and write a ranked CSV with score, uncertainty,
applicability-domain flag, QED and medicinal-chemistry filters (Lipinski, Veber, PAINS, Brenk).

Only molecules that enter the shortlist pay for QED, filters and the similarity search, so a
library costs about what parsing, standardising, featurizing and scoring it costs.

Example:
    >>> summary = screen_library(bundle, Path("library.smi"), out=Path("hits.csv"), top=100,
    ...                          filters=["lipinski", "pains"])
    >>> summary.n_scored, summary.skipped_by_reason
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing as mp
import os
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from medassist.data.io.molecules import RawBatch, iter_raw_batches
from medassist.data.io.tables import write_table
from medassist.exceptions import ConfigError, DataError, EmptyDataError
from medassist.featurizers.molecules import featurize_chunk, init_worker
from medassist.pipeline.molecules import ApplicabilityDomain, bundle_predict_features, score_columns
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
                checks = [("MW", Descriptors.MolWt(mol), 500), ("LogP", Crippen.MolLogP(mol), 5),
                          ("HBD", Lipinski.NumHDonors(mol), 5), ("HBA", Lipinski.NumHAcceptors(mol), 10)]
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
    """What a screen did: counts, skipped molecules by reason, speed and where the hits are."""

    out: Path
    n_read: int = 0
    n_scored: int = 0
    n_duplicates: int = 0
    n_failed_filters: int = 0
    n_hits: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def throughput(self) -> float:
        return self.n_read / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "read": self.n_read, "scored": self.n_scored, "duplicates": self.n_duplicates,
                "skipped": self.n_skipped, "skipped_by_reason": self.skipped_by_reason, "skipped_examples": self.skipped_examples,
                "failed_filters": self.n_failed_filters, "hits": self.n_hits, "seconds": round(self.seconds, 3),
                "molecules_per_second": round(self.throughput, 1), "workers": self.workers}


def _frame_batches(frame: pd.DataFrame, smiles_column: str, batch_size: int):
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


def screen_library(
    bundle: ModelBundle, library: Path | pd.DataFrame, *, out: Path, top: int = 100, filters: list[str] | None = None,
    batch_size: int = 2048, workers: int | None = None, smiles_column: str | None = None, rank: str = "highest",
    keep_duplicates: bool = False, exclude_failing: bool = False, task: int = 0, progress: bool = True,
    console: Console | None = None, skipped_out: Path | None = None, explain_dir: Path | None = None, explain_top: int = 0,
) -> ScreenSummary:
    """Screen ``library`` (a .smi/.sdf/.csv path, or a table) and write the ranked shortlist.

    Args:
        top: how many molecules to keep (by score; classification: positive-class probability).
        filters: any of ``lipinski``, ``veber``, ``pains``, ``brenk``; each gets a pass column and
            the alert that failed.
        exclude_failing: leave molecules that fail a filter out of the shortlist (they are counted).
        rank: ``highest`` or ``lowest`` score first.
        keep_duplicates: score repeated structures again (default: the first occurrence only).
        workers: featurization processes (default: every core; 1 runs in this process).
        skipped_out: also write every skipped molecule (row, input, reason) to this CSV.
        explain_dir: write a similarity-map PNG for the best ``explain_top`` hits here.
    """
    owner = "screen"
    check_number(top, name="top", owner=owner, low=1, integer=True)
    check_number(batch_size, name="batch_size", owner=owner, low=1, integer=True)
    if rank not in ("highest", "lowest"):
        raise ConfigError(f"The 'rank' option of screen must be 'highest' or 'lowest'. Got {rank!r} instead.")
    filters = parse_filters(filters)
    if exclude_failing and not filters:
        raise ConfigError("--exclude-failing needs --filters (which filters should a hit pass?).")
    n_tasks = len(bundle.schema.extras["targets"])
    if not 0 <= task < n_tasks:
        raise ConfigError(f"--task-index must be in 0..{n_tasks - 1}.")
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a directory; expected a CSV file name for the hits.")
    workers = default_workers() if workers is None else int(check_number(workers, name="workers", owner=owner, low=1, integer=True))
    console = console or Console(stderr=True)
    sign = 1.0 if rank == "highest" else -1.0
    fz = bundle.featurizer
    fz_dict = fz.to_dict()
    cols = score_columns(bundle)
    mf = MolFilters(names=filters)
    std = fz.make_standardizer()
    summary = ScreenSummary(out=out, workers=workers)
    skipped_counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    skipped_rows: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    heap: list[tuple[float, int, dict[str, Any]]] = []
    tie = itertools.count()

    def skip(row: int, text: str, reason: str) -> None:
        cat = reason.split(":", 1)[0]
        skipped_counts[cat] += 1
        if len(examples.setdefault(cat, [])) < 3:
            examples[cat].append(f"row {row}: {reason}")
        if skipped_out is not None:
            skipped_rows.append((row, str(text)[:300], reason))

    def consume(batch: RawBatch, res: dict[str, Any]) -> None:
        summary.n_read += len(batch.rows)
        for row, text, reason in res["skipped"]:
            skip(row, text, reason)
        ok = res["ok"]
        if not ok:
            return
        if "pred" in res:  # scored in a forked worker
            pred, spread = res["pred"], res["spread"]
        else:
            pred, spread = bundle_predict_features(bundle, res["features"])
        keys = sign * pred[:, task]
        for j, i in enumerate(ok):
            smi = res["smiles"][j]  # None with keep_duplicates: computed for shortlisted molecules only
            row = batch.rows[i]
            if not keep_duplicates:
                first = seen.get(smi)
                if first is not None:
                    summary.n_duplicates += 1
                    skip(row, smi, f"duplicate: same standardised structure as row {first}")
                    continue
                seen[smi] = row
            summary.n_scored += 1
            key = float(keys[j])
            if not np.isfinite(key):
                skip(row, smi, "no score: the model returned NaN")
                continue
            if len(heap) >= top and key <= heap[0][0]:
                continue
            if smi is None:
                smi = _canonical(batch.texts[i], batch.kind, std)
            rec = {"input_row": row, "columns": batch.columns[i], "smiles": smi,
                   "pred": pred[j], "spread": None if spread is None else spread[j]}
            if exclude_failing:
                rec["filters"] = _filter(mf, smi)
                if not rec["filters"]["passes_filters"]:
                    summary.n_failed_filters += 1
                    continue
            item = (key, next(tie), rec)
            if len(heap) < top:
                heapq.heappush(heap, item)
            else:
                heapq.heapreplace(heap, item)

    source = library if isinstance(library, pd.DataFrame) else Path(library)
    batches = (_frame_batches(source, smiles_column, batch_size) if isinstance(source, pd.DataFrame)
               else iter_raw_batches(source, batch_size=batch_size, smiles_column=smiles_column))
    t0 = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("[bold]screen"), TextColumn("{task.completed:,.0f} molecules"),
                  TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[skipped]}"), TimeElapsedColumn(),
                  console=console, disable=not progress, transient=False) as bar:
        ptask = bar.add_task("screen", total=None, rate="", skipped="")

        def tick() -> None:
            el = time.perf_counter() - t0
            bar.update(ptask, completed=summary.n_read, rate=f"{summary.n_read / el:,.0f} mol/s" if el > 0 else "",
                       skipped=f"{sum(skipped_counts.values()):,} skipped")

        batches = iter(batches)
        head = list(itertools.islice(batches, 2))
        if len(head) < 2 and (not head or len(head[0].rows) < batch_size):
            workers = 1  # one short batch: starting worker processes would cost more than it saves
        summary.workers = workers
        batches = itertools.chain(head, batches)
        if workers <= 1:
            for b in batches:
                consume(b, featurize_chunk(b.rows, b.texts, b.kind, featurizer=fz, canonical=not keep_duplicates))
                tick()
        else:
            # fork (Linux): workers start at once with the parent's modules and the model already in
            # memory, and score their own chunks, so only scores travel back and the parent only
            # reads the file and keeps the heap. Elsewhere (spawn) workers featurize and the parent
            # scores.
            fork = "fork" in mp.get_all_start_methods()
            ctx = mp.get_context("fork" if fork else "spawn")
            _FORKED["bundle"] = bundle
            init = (None, ()) if fork else (init_worker, (fz_dict,))
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init[0], initargs=init[1]) as pool:
                pending: deque = deque()
                for b in batches:
                    job = (_score_chunk, b.rows, b.texts, b.kind, not keep_duplicates) if fork else \
                        (featurize_chunk, b.rows, b.texts, b.kind, None, not keep_duplicates)
                    pending.append((b, pool.submit(*job)))
                    if len(pending) >= 2 * workers:  # a bounded window keeps memory flat
                        bb, fut = pending.popleft()
                        consume(bb, fut.result())
                        tick()
                while pending:
                    bb, fut = pending.popleft()
                    consume(bb, fut.result())
                    tick()
            _FORKED.clear()
        tick()
    summary.seconds = time.perf_counter() - t0
    summary.skipped_by_reason = dict(skipped_counts)
    summary.skipped_examples = examples
    if summary.n_read == 0:
        raise EmptyDataError(f"{library}: no molecules found in the library.")
    hits = _hits_table(bundle, sorted(heap, key=lambda it: (-it[0], it[1])), cols, task, mf, explain_dir, explain_top)
    summary.n_hits = len(hits)
    if skipped_out is not None:
        write_table(pd.DataFrame(skipped_rows, columns=["row", "input", "reason"]), skipped_out)
    write_table(hits, out)
    return summary


_FORKED: dict[str, Any] = {}


def _score_chunk(rows: list[int], texts: list[str], kind: str, canonical: bool) -> dict[str, Any]:
    """Worker of a forked pool: featurize and score a chunk with the bundle the parent held."""
    import torch

    if not _FORKED.get("threads"):
        torch.set_num_threads(1)  # one thread per worker process; the workers are the parallelism
        _FORKED["threads"] = True
    bundle = _FORKED["bundle"]
    res = featurize_chunk(rows, texts, kind, featurizer=bundle.featurizer, canonical=canonical)
    if res["features"] is not None:
        res["pred"], res["spread"] = bundle_predict_features(bundle, res["features"])
    res["features"] = None  # only the scores travel back
    return res


def _canonical(text: str, kind: str, std: Any) -> str:
    from medassist.data.io.molecules import prepare_molecule

    return prepare_molecule(text, kind=kind, standardizer=std)[1] or ""


def _filter(mf: MolFilters, smiles: str) -> dict[str, Any]:
    from rdkit import Chem

    return mf.apply(Chem.MolFromSmiles(smiles))


def _hits_table(bundle: ModelBundle, items: list, cols: list[tuple[str, str]], task: int, mf: MolFilters,
                explain_dir: Path | None, explain_top: int) -> pd.DataFrame:
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
        row["in_domain"] = "yes" if sim[k] >= ad.threshold else "no"
        row["qed"] = round(float(QED.qed(m)), 4)
        row.update(r.get("filters") or mf.apply(m))
        row["input_row"] = r["input_row"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=ours)
    if classification:
        frame.attrs["score_meaning"] = "probability of the positive class"
    if explain_dir is not None and explain_top > 0 and recs:
        from medassist.explain.molecules import atom_attributions, similarity_map_png

        Path(explain_dir).mkdir(parents=True, exist_ok=True)
        for k, m in enumerate(mols[:explain_top]):
            w = atom_attributions(bundle, m, task=task)
            (Path(explain_dir) / f"rank_{k + 1:04d}.png").write_bytes(similarity_map_png(m, w, legend=f"rank {k + 1}"))
    return frame
