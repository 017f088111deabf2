"""The privacy ledger: every differentially private training run spends privacy budget on its
data set, and a run that would take a data set past its total budget is refused.

Budgets compose by simple summation of ε (and δ) over runs on the same data, the basic
sequential-composition bound: loose but safe. The ledger is a JSON file under
``MEDASSIST_HOME`` written atomically; entries are only ever appended.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medassist.exceptions import ConfigError
from medassist.fileio import write_atomic
from medassist.validation import check_number


class PrivacyLedger:
    """Per-data-set record of (ε, δ) spent by DP training runs.

    Args:
        path: the ledger file (created on first record).
        total_epsilon: the most ε all runs on one data set may spend together.

    Example:
        >>> ledger = PrivacyLedger(path=home / "privacy_ledger.json", total_epsilon=10.0)
        >>> ledger.check("sha256-of-data", 3.0)      # raises ConfigError when over budget
        >>> ledger.record("sha256-of-data", epsilon=2.98, delta=1e-5, source="wdbc", bundle="models/wdbc")
    """

    def __init__(self, *, path: Path, total_epsilon: float) -> None:
        check_number(total_epsilon, name="total_epsilon", owner="PrivacyLedger", low=0, low_open=True)
        self.path = Path(path)
        self.total_epsilon = float(total_epsilon)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"entries": []}
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path}: the privacy ledger is corrupt ({e.msg}); restore it from a backup.") from e

    def entries(self, dataset_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._read()["entries"] if dataset_id is None or e["dataset_id"] == dataset_id]

    def spent(self, dataset_id: str) -> float:
        return float(sum(e["epsilon"] for e in self.entries(dataset_id)))

    def check(self, dataset_id: str, epsilon: float, *, source: str = "") -> None:
        """Raise ConfigError if spending ``epsilon`` more would exceed the data set's budget."""
        used = self.spent(dataset_id)
        if used + epsilon > self.total_epsilon + 1e-9:
            raise ConfigError(
                f"Privacy budget exceeded for data set {source or dataset_id[:12]}: {used:.3g} of ε = "
                f"{self.total_epsilon:g} already spent, and this run would spend {epsilon:g} more. "
                "Lower --dp-epsilon or raise MEDASSIST_PRIVACY_BUDGET_EPSILON (a governance decision)."
            )

    def record(self, dataset_id: str, *, epsilon: float, delta: float, source: str, bundle: str) -> dict[str, Any]:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="seconds"), "dataset_id": dataset_id,
            "source": source, "bundle": bundle, "epsilon": float(epsilon), "delta": float(delta),
        }
        with self._locked():
            data = self._read()
            data["entries"].append(entry)
            write_atomic(self.path, json.dumps(data, indent=1), mode=0o600, encoding=None)
        return entry
