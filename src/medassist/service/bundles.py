"""The model bundles the service offers, found by scanning directories (no user input ever
becomes a path: routes look bundles up by their 16-hex-digit id)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medassist.registry.bundle import ModelBundle, load_bundle

log = logging.getLogger(__name__)
RESCAN_S = 5.0


@dataclass(frozen=True, kw_only=True)
class BundleInfo:
    """What the model list shows, read from a bundle's JSON files without loading weights."""

    bundle_id: str
    path: Path
    task: str
    name: str
    created: str
    data_source: str
    model_card: dict[str, Any]
    has_report: bool
    mtime_ns: int

    @property
    def headline(self) -> dict[str, Any]:
        """Test-split AUC and ECE with intervals, when the card has them."""
        metrics = (self.model_card.get("metrics") or {}).get("metrics") or {}
        return {k: metrics[k] for k in ("auc", "accuracy", "ece") if isinstance(metrics.get(k), dict)}

    def summary(self) -> dict[str, Any]:
        return {"id": self.bundle_id, "name": self.name, "task": self.task, "created": self.created,
                "data_source": self.data_source, "metrics": self.headline, "has_report": self.has_report}


def _title(path: Path, meta: dict[str, Any], card: dict[str, Any]) -> str:
    """The model's name in clinical words ("Breast biopsy malignancy — FT-Transformer (small)")
    from its data dictionary; the card's name when there is none."""
    from medassist.data.dictionary import bundle_dictionary, model_title
    from medassist.exceptions import DataError

    name = str(card.get("name") or path.name)
    try:
        title = bundle_dictionary(path).title
    except DataError:
        return name
    if not title or title in name:
        return name
    model = card.get("model") or {}
    family = str(model.get("family") or "").split(" ")[0]
    return model_title(subject=title, family=family, size=str(model.get("size") or "")) if family else name


def _read_info(path: Path) -> BundleInfo | None:
    try:
        meta_path = path / "bundle.json"
        meta = json.loads(meta_path.read_text())
        card_path = path / "model_card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        bundle_id = str(meta.get("files", {}).get("model.safetensors", ""))[:16]
        if len(bundle_id) != 16:  # a bundle kind without that file: its bundle.json identifies it
            bundle_id = hashlib.sha256(meta_path.read_bytes()).hexdigest()[:16]
        return BundleInfo(
            bundle_id=bundle_id, path=path, task=str(meta.get("task", "diagnosis-tabular")),
            name=_title(path, meta, card), created=str(meta.get("created", "")),
            data_source=str(meta.get("data_source", "")), model_card=card if isinstance(card, dict) else {},
            has_report=(path / "report.html").is_file(), mtime_ns=meta_path.stat().st_mtime_ns,
        )
    except (OSError, ValueError, AttributeError) as e:
        log.warning("skipping %s: not a readable model bundle (%s)", path.name, type(e).__name__)
        return None


@dataclass(kw_only=True)
class BundleCatalog:
    """Bundles under ``roots`` (each root's immediate subdirectories holding a bundle.json)."""

    roots: list[Path]
    _infos: dict[str, BundleInfo] = field(default_factory=dict, init=False, repr=False)
    _loaded: dict[str, tuple[int, ModelBundle]] = field(default_factory=dict, init=False, repr=False)
    _scanned_at: float = field(default=-1e9, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def refresh(self) -> None:
        infos: dict[str, BundleInfo] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            for path in sorted(root.iterdir()):
                if path.name.startswith(".") or not (path / "bundle.json").is_file():
                    continue
                info = _read_info(path)
                if info is None:
                    continue
                if info.bundle_id in infos:
                    log.warning("bundle %s has the same weights as %s; offering the first", path.name, infos[info.bundle_id].path.name)
                    continue
                infos[info.bundle_id] = info
        with self._lock:
            self._infos, self._scanned_at = infos, time.monotonic()

    def _fresh(self) -> dict[str, BundleInfo]:
        if time.monotonic() - self._scanned_at > RESCAN_S:
            self.refresh()
        return self._infos

    def list(self, *, tasks: tuple[str, ...] | None = None) -> list[BundleInfo]:
        infos = sorted(self._fresh().values(), key=lambda i: (i.task, i.name, i.bundle_id))
        return [i for i in infos if tasks is None or i.task in tasks]

    def get(self, bundle_id: str) -> BundleInfo | None:
        info = self._fresh().get(bundle_id)
        if info is None and time.monotonic() - self._scanned_at > 0.5:  # maybe written a moment ago
            self.refresh()
            info = self._infos.get(bundle_id)
        return info

    def is_loaded(self, info: BundleInfo) -> bool:
        """Whether ``load(info)`` would answer from the cache (no disk, no checksums)."""
        cached = self._loaded.get(info.bundle_id)
        return cached is not None and cached[0] == info.mtime_ns

    def load(self, info: BundleInfo) -> ModelBundle:
        """The loaded bundle (cached; reloaded when its bundle.json changes). Checks checksums."""
        cached = self._loaded.get(info.bundle_id)
        if cached is not None and cached[0] == info.mtime_ns:
            return cached[1]
        with self._lock:
            cached = self._loaded.get(info.bundle_id)
            if cached is not None and cached[0] == info.mtime_ns:
                return cached[1]
            bundle = load_bundle(info.path)
            self._loaded[info.bundle_id] = (info.mtime_ns, bundle)
            return bundle
