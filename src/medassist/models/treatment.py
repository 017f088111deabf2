"""Treatment-effect networks: a multi-arm outcome network (TARNet/DragonNet style), a small
effect-correction network for the doubly robust second stage, and the ensemble that holds both.

Output layout of :class:`MultiArmNet` (one flat tensor, so the shared Trainer can batch it):
``(B, A * K + A)``: for each of the A arms its K outcome outputs (K = 1 for a continuous mean or a
binary logit, K = J hazard logits for a discrete-time survival outcome), then A propensity
logits. :func:`split_outputs` reads it back by name.

:class:`TreatmentModel` holds a fitted ensemble with its featurizer and turns the raw outputs into
outcomes per member (the pipeline builds it; evaluation and the assistant read it).

A survival outcome uses the one survival core of ``models/survival.py``: hazard logits over J
bins (edges ``e_0 = 0 < ... < e_J = horizon``), its likelihood, curves, RMST and risk at the horizon.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from medassist.featurizers.tabular import TabularFeaturizer
from medassist.models.registry import MODELS, model_from_spec

# the one survival core: curves, RMST and the discrete-time likelihood (re-exported for old imports)
from medassist.models.survival import discrete_time_nll, risk_at_horizon, survival_at_edges
from medassist.models.survival import restricted_mean as rmst
from medassist.models.tabular import _ResidualBlock


class MultiArmOutputs(NamedTuple):
    """``arm``: (B, A, K) per-arm outcome outputs; ``propensity``: (B, A) assignment logits."""

    arm: torch.Tensor
    propensity: torch.Tensor


def split_outputs(out: torch.Tensor, *, n_arms: int, n_outputs: int) -> MultiArmOutputs:
    """Read a :class:`MultiArmNet` output (B, A*K + A) by name."""
    b = out.shape[0]
    return MultiArmOutputs(arm=out[:, : n_arms * n_outputs].reshape(b, n_arms, n_outputs), propensity=out[:, n_arms * n_outputs :])


@MODELS.register("multiarm")
class MultiArmNet(nn.Module):
    """Shared residual representation, one head per arm, one propensity head.

    Each arm's output is a shared baseline head plus the arm's own head, whose last layer starts
    at zero: the network begins with no treatment effect and the arm heads learn departures from
    the shared prognosis (less variance in effects than independent heads).

    Args:
        n_features: F, width of the featurized covariates.
        n_arms: A, number of treatment arms.
        n_outputs: K, outputs per arm (1: continuous mean or binary logit; J: hazard logits).
        d_hidden: width of the shared representation.
        n_blocks: residual blocks in the representation.
        expansion: feed-forward expansion inside a block.
        d_head: hidden width of each arm's head.
        dropout: dropout in blocks and heads.

    Shapes: x (B, F) → (B, A*K + A); see :func:`split_outputs`.

    Example:
        >>> net, spec = build_model("multiarm", size="small", n_features=20, n_arms=4, n_outputs=1)
        >>> split_outputs(net(torch.zeros(8, 20)), n_arms=4, n_outputs=1).arm.shape
        torch.Size([8, 4, 1])
    """

    PRESETS = {
        "small": {"d_hidden": 64, "n_blocks": 2, "expansion": 2, "d_head": 32, "dropout": 0.1},
        "large": {"d_hidden": 384, "n_blocks": 4, "expansion": 2, "d_head": 128, "dropout": 0.1},
    }

    def __init__(
        self, *, n_features: int, n_arms: int, n_outputs: int, d_hidden: int, n_blocks: int, expansion: int,
        d_head: int, dropout: float,
    ) -> None:
        super().__init__()
        self.n_arms, self.n_outputs = n_arms, n_outputs
        self.stem = nn.Linear(n_features, d_hidden)
        self.blocks = nn.Sequential(*[_ResidualBlock(d=d_hidden, expansion=expansion, dropout=dropout) for _ in range(n_blocks)])
        self.norm = nn.LayerNorm(d_hidden)
        heads, lasts = [], []
        for _ in range(n_arms):
            hidden = nn.Linear(d_hidden, d_head)  # built before the last layer: the same random draws as always
            lasts.append(nn.Linear(d_head, n_outputs))
            heads.append(nn.Sequential(hidden, nn.GELU(), nn.Dropout(dropout), lasts[-1]))
        self.heads = nn.ModuleList(heads)
        self.base = nn.Sequential(nn.Linear(d_hidden, d_head), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_head, n_outputs))
        for last in lasts:  # arms start with no effect: heterogeneity must be earned
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.propensity = nn.Linear(d_hidden, n_arms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.gelu(self.norm(self.blocks(self.stem(x))))
        base = self.base(z)
        arm = torch.cat([base + head(z) for head in self.heads], dim=1)
        return torch.cat([arm, self.propensity(z)], dim=1)


@MODELS.register("effect_mlp")
class EffectCorrection(nn.Module):
    """Second stage of the DR-learner: a correction to the plug-in effect of each non-reference arm.

    Its last layer starts at zero, so an untrained correction is exactly the plug-in effect.

    Shapes: x (B, F) → (B, A - 1).
    """

    PRESETS = {
        "small": {"d_hidden": 32, "dropout": 0.1},
        "large": {"d_hidden": 128, "dropout": 0.1},
    }

    def __init__(self, *, n_features: int, n_contrasts: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        trunk = [nn.Linear(n_features, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_hidden), nn.GELU()]
        last = nn.Linear(d_hidden, n_contrasts)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*trunk, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def start_at(self, effect: torch.Tensor) -> None:
        """Make the untrained correction output ``effect`` (A - 1,) for every input (its output bias)."""
        last = self.net[-1]
        if not isinstance(last, nn.Linear):
            raise TypeError(f"EffectCorrection ends in {type(last).__name__}, not the linear layer it was built with.")
        last.bias.copy_(effect)


@MODELS.register("treatment_ensemble")
class TreatmentEnsemble(nn.Module):
    """K cross-fitted outcome networks and (optionally) K effect corrections: the bundle's model.

    ``forward`` returns the stacked member outputs (K, B, A*K_out + A); the pipeline reads them
    with :func:`split_outputs` and :meth:`corrections`.
    """

    PRESETS: dict[str, dict[str, Any]] = {"small": {}, "large": {}}

    def __init__(self, *, member: dict[str, Any], effect: dict[str, Any] | None, n_members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList([model_from_spec(member) for _ in range(n_members)])
        self.effects = nn.ModuleList([model_from_spec(effect) for _ in range(n_members)]) if effect is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members])

    def corrections(self, x: torch.Tensor) -> torch.Tensor | None:
        """DR corrections (K, B, A - 1), or None when the ensemble has none."""
        if self.effects is None:
            return None
        return torch.stack([e(x) for e in self.effects])

    def load_effects(self, effects: list[nn.Module]) -> None:
        """Copy K fitted effect corrections into this ensemble's own."""
        if self.effects is None:
            raise ValueError("This treatment ensemble was built without effect corrections.")
        for dst, src in zip(self.effects, effects, strict=True):
            dst.load_state_dict(src.state_dict())


def treatment_ensemble_spec(member: dict[str, Any], effect: dict[str, Any] | None, n_members: int) -> dict[str, Any]:
    return {"name": "treatment_ensemble", "size": member["size"], "params": {"member": member, "effect": effect, "n_members": n_members}}


# ---------------------------------------------------------------------------- the tree effect stage

#: LightGBM settings of the backfitted outcome model (one thread, deterministic). The prognostic part is
#: shared by every arm and learns from all of a member's rows, so it may be deeper than the arm effects,
#: each of which learns from one arm's rows only (depth 2: main effects and pairwise interactions; a
#: stronger L2 shrinkage of the leaves, since one arm's rows are few and noisy; every row in every
#: round, since row subsampling adds more noise than it removes on so few rows).
PROGNOSTIC_PARAMS: dict[str, Any] = {
    "objective": "l2", "learning_rate": 0.03, "num_leaves": 8, "max_depth": 3, "min_data_in_leaf": 20, "lambda_l2": 5.0,
    "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1, "num_threads": 1, "deterministic": True,
}
EFFECT_PARAMS: dict[str, Any] = {**PROGNOSTIC_PARAMS, "num_leaves": 4, "max_depth": 2, "min_data_in_leaf": 10, "lambda_l2": 20.0,
                                 "bagging_fraction": 1.0, "bagging_freq": 0}
#: The backfitted tree models that are stacked per contrast, each as (prognostic, effect) settings over the
#: defaults above: trees with constant leaves catch thresholds; trees with linear leaves (a ridge fit in
#: every leaf) follow trends, which constant leaves only approximate by many steps.
TREE_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "constant_leaves": ({}, {}),
    "linear_leaves": ({"linear_tree": True, "linear_lambda": 1.0}, {"linear_tree": True, "linear_lambda": 1.0}),
}
#: Backfitting passes, rounds within a pass, and the most rounds the last pass may choose by cross-validation.
BACKFIT_PASSES, PROGNOSTIC_ROUNDS, EFFECT_ROUNDS, MAX_ROUNDS = 10, 300, 200, 800
#: Folds of a member's training rows over which the last pass cross-fits the prognostic part m, so that the
#: arm effects learn from residuals y - m(x) of an m that never saw the row.
RESIDUAL_FOLDS = 5
#: 2: several tree models per contrast, mixed (2026-12-06); 1: one per contrast (still read).
EFFECT_TREES_FORMAT = 2


class EffectTrees:
    """Cross-fitted effect trees per member k and contrast c (arm a vs the reference), fitted on the rows
    member k trained on only (fold k stays held out, and the K members stay delete-a-group jackknife
    replicates). Two kinds:

    - ``backfit`` (:func:`fit_effect_trees`): outcome models y = m(x) + tau_arm(x) + noise with
      tau_ref = 0, fitted by backfitting gradient-boosted trees: the prognostic part m on every arm's
      rows, each tau_a on arm a's rows. Since m is shared, it learns from four times the rows a
      per-arm outcome model has, and its error cancels in the effect. ``boosters[k][c]`` holds tau_a of
      each of the :data:`TREE_VARIANTS` (``variants``), and the tree effect is their mix
      ``sum_j mix[c][j] · tau_a^j``.
    - ``xlearner`` (bundles of 2026-12-05): ``boosters[k][c] = (treated, reference)``, the X-learner's
      regressions of the imputed effects; tau = g · reference + (1 - g) · treated, g = e_a / (e_a + e_ref).

    Member k's effect of contrast c is the blend (1 - w_c) · network^k + w_c · tree^k; w_c and the mix
    are chosen on held-out fold rows (:func:`stack_weights`). Stored as LightGBM model text, never pickled.

    Args:
        boosters: per member, per contrast: a list of LightGBM ``Booster`` or model strings, one per variant
            (``backfit``; a single one is a list of one), or a (treated, reference) pair (``xlearner``).
        weights: w_c per contrast in [0, 1] (default 1: the trees alone).
        kind: ``backfit`` or ``xlearner``.
        variants: the names of the ``backfit`` tree models, in the order of ``boosters[k][c]``.
        mix: per contrast, the weights of the variants (non-negative, summing to 1; default equal).
        rounds: the boosting rounds the cross-validation chose, per variant (prognostic part, then per
            contrast); for the record.
    """

    def __init__(self, *, boosters: list[list[Any]], weights: list[float] | None = None, kind: str = "backfit",
                 variants: list[str] | None = None, mix: list[list[float]] | None = None,
                 rounds: list[list[int]] | None = None) -> None:
        if kind not in ("backfit", "xlearner"):
            raise ValueError(f"EffectTrees kind must be 'backfit' or 'xlearner'; got {kind!r}.")
        if kind == "backfit":
            boosters = [[list(b) if isinstance(b, (list, tuple)) else [b] for b in member] for member in boosters]
        self.boosters, self.kind, self.rounds = boosters, kind, [list(r) for r in rounds or []]
        n_variants = len(boosters[0][0]) if kind == "backfit" and boosters and boosters[0] else 1
        self.variants = list(variants or list(TREE_VARIANTS)[:n_variants])
        self.weights = [1.0] * self.n_contrasts if weights is None else [float(w) for w in weights]
        if len(self.weights) != self.n_contrasts or not all(0.0 <= w <= 1.0 for w in self.weights):
            raise ValueError(f"EffectTrees needs one weight in [0, 1] per contrast ({self.n_contrasts}); got {self.weights}.")
        self.mix = [[1.0 / n_variants] * n_variants for _ in range(self.n_contrasts)] if mix is None else [[float(v) for v in m] for m in mix]
        if len(self.variants) != n_variants or len(self.mix) != self.n_contrasts or any(
                len(m) != n_variants or min(m) < 0.0 or abs(sum(m) - 1.0) > 1e-6 for m in self.mix):
            raise ValueError(f"EffectTrees needs, per contrast, {n_variants} non-negative mix weights summing to 1 "
                             f"(variants {self.variants}); got {self.mix}.")

    @property
    def n_members(self) -> int:
        return len(self.boosters)

    @property
    def n_contrasts(self) -> int:
        return len(self.boosters[0]) if self.boosters else 0

    def _loaded(self) -> list[list[Any]]:
        import lightgbm as lgb

        def load(b: Any) -> Any:
            return lgb.Booster(model_str=b) if isinstance(b, str) else b

        if self.kind == "xlearner":
            self.boosters = [[(load(t), load(r)) for t, r in member] for member in self.boosters]
        else:
            self.boosters = [[[load(b) for b in variants] for variants in member] for member in self.boosters]
        return self.boosters

    def predict_variants(self, x: np.ndarray) -> np.ndarray:
        """``backfit``: each variant's effects (K, B, A - 1, J) of covariates x (B, F), before the mix."""
        if self.kind != "backfit":
            raise ValueError("Only backfitted effect trees have variants.")
        return np.stack([np.stack([np.stack([b.predict(x) for b in variants], axis=-1) for variants in member], axis=1)
                         for member in self._loaded()])

    def predict(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Effects (K, B, A - 1) of covariates x (B, F); ``g`` (K, B, A - 1), the treated arm's share of
        each pair, weighs the two sides of an ``xlearner`` (unused by ``backfit``)."""
        if self.kind == "backfit":
            return np.einsum("kbcj,cj->kbc", self.predict_variants(x), np.asarray(self.mix))
        out = np.zeros((self.n_members, len(x), self.n_contrasts))
        for k, member in enumerate(self._loaded()):
            for c, (treated, reference) in enumerate(member):
                out[k, :, c] = g[k, :, c] * reference.predict(x) + (1.0 - g[k, :, c]) * treated.predict(x)
        return out

    def to_json(self) -> str:
        if self.kind == "xlearner":
            members: list[list[dict[str, Any]]] = [[{"treated": t.model_to_string(), "reference": r.model_to_string()}
                                                    for t, r in member] for member in self._loaded()]
        else:
            members = [[{"effects": [b.model_to_string() for b in variants]} for variants in member] for member in self._loaded()]
        return json.dumps({"format": EFFECT_TREES_FORMAT, "kind": self.kind, "weights": self.weights, "variants": self.variants,
                           "mix": self.mix, "rounds": self.rounds, "members": members})

    @classmethod
    def from_json(cls, text: str, *, source: str) -> EffectTrees:
        try:
            data = json.loads(text)
            if data.get("format") not in (1, EFFECT_TREES_FORMAT):
                raise ValueError(f"format {data.get('format')!r}, expected 1 or {EFFECT_TREES_FORMAT}")
            kind = data.get("kind", "xlearner")
            boosters: list[list[Any]]
            if kind == "xlearner":
                boosters = [[(str(c["treated"]), str(c["reference"])) for c in member] for member in data["members"]]
            else:  # format 1: one booster per contrast ("effect")
                boosters = [[[str(b) for b in c["effects"]] if "effects" in c else [str(c["effect"])] for c in member]
                            for member in data["members"]]
            rounds = data.get("rounds", [])
            if rounds and not isinstance(rounds[0], list):
                rounds = [rounds]
            return cls(boosters=boosters, weights=[float(w) for w in data["weights"]], kind=kind, variants=data.get("variants"),
                       mix=data.get("mix"), rounds=[[int(r) for r in v] for v in rounds])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: not a readable effect-tree file ({e}).") from e


def stack_weights(columns: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise mean((target - columns @ w)^2): the best convex
    mix of the candidate predictions (N, J) of one quantity. Exact, by trying every support (J is small).

    Args:
        columns: (N, J) each candidate's out-of-fold predictions.
        target: (N,) what they predict (a noisy observation of it is enough: noise adds a constant).
    """
    n, n_cols = columns.shape
    best, best_loss = np.full(n_cols, 1.0 / n_cols), np.inf
    if n == 0:
        return best
    for size in range(1, n_cols + 1):
        for support in combinations(range(n_cols), size):
            x = columns[:, support]
            gram = x.T @ x / n
            gram = gram + 1e-9 * (np.trace(gram) / size + 1e-12) * np.eye(size)
            inv_b, inv_1 = np.linalg.solve(gram, x.T @ target / n), np.linalg.solve(gram, np.ones(size))
            w_s = inv_b - (inv_b.sum() - 1.0) / inv_1.sum() * inv_1  # least squares subject to sum(w) = 1
            if w_s.min() < -1e-12:
                continue
            w = np.zeros(n_cols)
            w[list(support)] = np.clip(w_s, 0.0, None)
            w /= w.sum()
            loss = float(np.mean((target - columns @ w) ** 2))
            if loss < best_loss - 1e-15:
                best, best_loss = w, loss
    return best


def _boost_with_curve(params: dict[str, Any], x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                      rounds: int) -> tuple[Any, np.ndarray]:
    """A booster of ``rounds`` rounds and its validation sum of squared errors after each round (all
    zero when there are no validation rows: such a member says nothing about the rounds)."""
    import lightgbm as lgb

    if len(y_val) == 0:
        return lgb.train(params, lgb.Dataset(x_fit, y_fit), rounds), np.zeros(rounds)
    curve: dict[str, Any] = {}
    booster = lgb.train(params, lgb.Dataset(x_fit, y_fit), rounds, valid_sets=[lgb.Dataset(x_val, y_val)], valid_names=["val"],
                        callbacks=[lgb.record_evaluation(curve)])
    return booster, np.asarray(curve["val"]["l2"]) * len(y_val)


def cross_fitted(params: dict[str, Any], x: np.ndarray, target: np.ndarray, *, rounds: int, n_folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions (N,) of a booster of ``rounds`` rounds: each row is predicted by the booster
    fitted on the other folds (``n_folds`` random folds, seeded), so its own target never enters its prediction."""
    import lightgbm as lgb

    fold = np.random.default_rng(seed).permutation(len(x)) % n_folds
    out = np.zeros(len(x))
    for j in range(n_folds):
        fit, held = fold != j, fold == j
        out[held] = lgb.train(params, lgb.Dataset(x[fit], target[fit]), rounds).predict(x[held])
    return out


class _Backfitted(NamedTuple):
    boosters: list[list[Any]]  # per member, per contrast: tau_a
    rounds: list[int]  # prognostic part, then per contrast
    prognostic: np.ndarray  # (K, N) m of every member


def _backfit(x: np.ndarray, y: np.ndarray, arm: np.ndarray, *, folds: list[tuple[np.ndarray, np.ndarray]], n_arms: int, others: list[int],
             prognostic_params: dict[str, Any], effect_params: dict[str, Any], seed: int) -> _Backfitted:
    """One backfitted tree model per member (see :func:`fit_effect_trees`)."""
    import lightgbm as lgb

    tau = np.zeros((len(folds), len(x), n_arms))
    m = np.zeros((len(folds), len(x)))
    prognostic = [{**prognostic_params, "seed": seed + k} for k in range(len(folds))]
    effect = [{**effect_params, "seed": seed + k} for k in range(len(folds))]

    def prognostic_target(k: int, rows: np.ndarray) -> np.ndarray:
        return y[rows] - tau[k, rows, arm[rows]]

    for k, (tr, _) in enumerate(folds):
        for _ in range(BACKFIT_PASSES - 1):
            m[k] = lgb.train(prognostic[k], lgb.Dataset(x[tr], prognostic_target(k, tr)), PROGNOSTIC_ROUNDS).predict(x)
            for a in others:
                ra = tr[arm[tr] == a]
                tau[k, :, a] = lgb.train(effect[k], lgb.Dataset(x[ra], y[ra] - m[k, ra]), EFFECT_ROUNDS).predict(x)
    # last pass: rounds chosen on the summed held-out curves of all members
    fitted = [_boost_with_curve(prognostic[k], x[tr], prognostic_target(k, tr), x[va], prognostic_target(k, va), MAX_ROUNDS)
              for k, (tr, va) in enumerate(folds)]
    chosen = [int(np.argmin(sum(curve for _, curve in fitted))) + 1]
    for k, (booster, _) in enumerate(fitted):
        m[k] = booster.predict(x, num_iteration=chosen[0])
    # The arm effects learn from residuals y - m(x) of an m cross-fitted within the member's rows (as the
    # R-learner does): m fitted on a row has partly learned that row's noise, which shrinks the residual the
    # effect should explain. Held-out rows are out of the member's sample already.
    residual_m = m.copy()
    for k, (tr, _) in enumerate(folds):
        residual_m[k, tr] = cross_fitted(prognostic[k], x[tr], prognostic_target(k, tr), rounds=chosen[0], n_folds=RESIDUAL_FOLDS,
                                         seed=seed + k)
    boosters: list[list[Any]] = [[] for _ in folds]
    for a in others:
        fitted = []
        for k, (tr, va) in enumerate(folds):
            ra, rv = tr[arm[tr] == a], va[arm[va] == a]
            fitted.append(_boost_with_curve(effect[k], x[ra], y[ra] - residual_m[k, ra], x[rv], y[rv] - m[k, rv], MAX_ROUNDS))
        rounds = int(np.argmin(sum(curve for _, curve in fitted))) + 1
        chosen.append(rounds)
        for k, (booster, _) in enumerate(fitted):
            boosters[k].append(lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds)))
    return _Backfitted(boosters=boosters, rounds=chosen, prognostic=m)


def fit_effect_trees(x: np.ndarray, y: np.ndarray, arm: np.ndarray, *, folds: list[tuple[np.ndarray, np.ndarray]], n_arms: int,
                     ref: int, seed: int) -> tuple[EffectTrees, np.ndarray]:
    """Fit ``backfit`` :class:`EffectTrees`, one backfitted model per :data:`TREE_VARIANTS`: for member k,
    the outcome model y = m(x) + tau_arm(x) on its training rows ``folds[k][0]``, by backfitting boosted
    trees (m on all its rows against y - tau_arm(x), then each tau_a on arm a's rows against y - m(x);
    :data:`BACKFIT_PASSES` passes from tau = 0). In the last pass each tau_a learns from residuals of an m
    cross-fitted over :data:`RESIDUAL_FOLDS` folds of the member's rows (:func:`cross_fitted`).

    In the last pass the number of rounds is chosen by cross-validation across the members: every member
    records its validation loss after each round on its held-out rows ``folds[k][1]``, the K curves are
    summed, and every member stops at the round of the smallest sum (one number for m, one per contrast).
    With K folds, every pool row validates once, so the choice rests on the whole pool, not one fold: a
    constant effect stops after a few rounds, a threshold surface runs on.

    Returns:
        The trees (equal mix, weight 1) and the prognostic part m (K, N) of every member, averaged over
        the variants: the reference-arm outcome that :func:`stack_weights` measures effects against.
    """
    if any(va.size == 0 for _, va in folds):
        raise ValueError("Effect trees need held-out rows in every fold.")
    others = [a for a in range(n_arms) if a != ref]
    fits = [_backfit(x, y, arm, folds=folds, n_arms=n_arms, others=others, prognostic_params={**PROGNOSTIC_PARAMS, **p},
                     effect_params={**EFFECT_PARAMS, **e}, seed=seed) for p, e in TREE_VARIANTS.values()]
    boosters = [[[f.boosters[k][c] for f in fits] for c in range(len(others))] for k in range(len(folds))]
    trees = EffectTrees(boosters=boosters, kind="backfit", variants=list(TREE_VARIANTS), rounds=[f.rounds for f in fits])
    return trees, np.mean([f.prognostic for f in fits], axis=0)


# ---------------------------------------------------------------------------- a fitted model


class TreatmentModel:
    """Featurizer + ensemble + what is needed to turn outputs into outcomes (from training or a bundle).

    ``info`` holds plain JSON: arms, ref, kind, better, y_mean, y_sd, edges, corr_scale, and more.
    ``trees`` (optional) are the X-learner effect trees: with them, member k predicts a non-reference
    arm as its reference-arm outcome plus the blend of its network effect (arm head + correction) and
    its tree effect; the reference arm stays the network's.
    """

    def __init__(self, *, featurizer: TabularFeaturizer, ensemble: TreatmentEnsemble, info: dict[str, Any],
                 trees: EffectTrees | None = None) -> None:
        self.featurizer, self.ensemble, self.info, self.trees = featurizer, ensemble, info, trees
        self.n_arms, self.ref, self.kind = len(info["arms"]), int(info["ref"]), info["kind"]
        self.n_outputs = len(info["edges"]) - 1 if self.kind == "survival" else 1

    def features(self, frame: pd.DataFrame, *, source: str) -> np.ndarray:
        return self.featurizer.transform(frame, source=source).values

    def member_outcomes(self, x: torch.Tensor, *, corrected: bool = True, trees: bool = True) -> dict[str, torch.Tensor]:
        """Per-member predictions in outcome units: ``pred`` (K, B, A), ``risk`` (survival),
        ``propensity`` (K, B, A) probabilities.

        ``corrected=False`` gives the networks' plug-in predictions; ``trees=False`` leaves out the
        effect trees (not differentiable): the networks with their corrections, if any.
        """
        raw = self.ensemble(x)
        parts = split_outputs(raw.reshape(-1, raw.shape[-1]), n_arms=self.n_arms, n_outputs=self.n_outputs)
        k, b = raw.shape[0], raw.shape[1]
        arm = parts.arm.reshape(k, b, self.n_arms, self.n_outputs)
        out: dict[str, torch.Tensor] = {"propensity": torch.softmax(parts.propensity.reshape(k, b, self.n_arms), dim=-1)}
        if self.kind == "continuous":
            mu = arm[..., 0] * self.info["y_sd"] + self.info["y_mean"]
        elif self.kind == "binary":
            mu = torch.sigmoid(arm[..., 0])
        else:
            edges = torch.tensor(self.info["edges"], dtype=arm.dtype)
            mu = rmst(arm, edges)
            out["risk"] = risk_at_horizon(arm)
        if corrected:
            corr = self.ensemble.corrections(x)
            if corr is not None:
                cols = list(torch.unbind(corr * self.info["corr_scale"], dim=-1))
                cols.insert(self.ref, torch.zeros_like(cols[0]))
                mu = mu + torch.stack(cols, dim=-1)
                if self.kind == "binary":
                    mu = mu.clamp(0.0, 1.0)
            if trees and self.trees is not None:
                out["pred_network"] = mu  # the networks' own predictions: intervals span both (see evaluation.treatment_policy)
                mu = self._tree_outcomes(x, mu, out["propensity"])
        out["pred"] = mu
        return out

    def _tree_outcomes(self, x: torch.Tensor, mu: torch.Tensor, propensity: torch.Tensor) -> torch.Tensor:
        """Member k's arm a: its reference-arm outcome + the blend of its network effect (``mu``: plug-in +
        correction) and its tree effect of a (backfitted, or X-learner in earlier bundles; continuous outcomes)."""
        if self.trees is None:
            raise ValueError("This treatment model has no effect trees.")
        ref = self.ref
        others = [a for a in range(self.n_arms) if a != ref]
        if self.info["assignment"] == "randomised":
            p = torch.tensor([float(self.info["arm_probabilities"][a]) for a in self.info["arms"]], dtype=mu.dtype)
            p = p.expand_as(propensity)
        else:
            p = propensity.clamp_min(float(self.info.get("propensity_clip", 0.02)))
        g = p[..., others] / (p[..., others] + p[..., [ref]])  # (K, B, A - 1): the treated arm's share of the pair
        tau = torch.as_tensor(self.trees.predict(x.detach().numpy().astype(np.float64), g.detach().numpy().astype(np.float64)),
                              dtype=mu.dtype)
        w = torch.tensor(self.trees.weights, dtype=mu.dtype)
        plugin = mu[..., others] - mu[..., [ref]]
        cols = list(torch.unbind((1.0 - w) * plugin + w * tau, dim=-1))
        cols.insert(ref, torch.zeros_like(cols[0]))
        return mu[..., [ref]] + torch.stack(cols, dim=-1)

    @torch.no_grad()
    def draws(self, x: np.ndarray, *, corrected: bool = True, trees: bool = True, batch_size: int = 1024) -> dict[str, np.ndarray]:
        self.ensemble.eval()
        chunks: dict[str, list[np.ndarray]] = {}
        for s in range(0, len(x), batch_size):
            for key, v in self.member_outcomes(torch.as_tensor(x[s : s + batch_size]), corrected=corrected, trees=trees).items():
                chunks.setdefault(key, []).append(v.numpy())
        return {k: np.concatenate(v, axis=1) for k, v in chunks.items()}

    def propensity(self, prop_draws: np.ndarray) -> np.ndarray:
        """(N, A) assignment probabilities: known by design, or the ensemble's estimate, clipped."""
        n = prop_draws.shape[1]
        if self.info["assignment"] == "randomised":
            p = np.array([self.info["arm_probabilities"][a] for a in self.info["arms"]])
            return np.tile(p, (n, 1))
        e = np.clip(prop_draws.mean(axis=0), self.info["propensity_clip"], 1.0)
        return e / e.sum(axis=1, keepdims=True)


class _ContrastModule(nn.Module):
    """x (B, F) → (B, 1): the ensemble's mean effect of arm ``a`` over the reference (for attributions)."""

    def __init__(self, model: TreatmentModel, arm: int) -> None:
        super().__init__()
        self.model, self.arm, self.inner = model, arm, model.ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # network only: effect trees are piecewise constant (no gradient), so attributions explain the
        # networks' effect (plug-in + correction), which the tree stage refines but does not replace in kind
        pred = self.model.member_outcomes(x, trees=False)["pred"].mean(dim=0)
        return (pred[:, self.arm] - pred[:, self.model.ref]).unsqueeze(1)


def contrast_module(model: TreatmentModel, arm: int) -> nn.Module:
    return _ContrastModule(model, arm)


# ---------------------------------------------------------------------------- losses


def multiarm_loss(
    outputs: torch.Tensor, target: torch.Tensor, *, n_arms: int, n_outputs: int, kind: str, propensity_weight: float
) -> torch.Tensor:
    """Factual loss of the observed arm's head plus the propensity head's cross-entropy.

    Args:
        outputs: (B, A*K + A) network outputs.
        target: (B, 3) float: ``[arm index, y, event]``; ``y`` is the standardised outcome
            (continuous), 0/1 (binary) or the bin index (survival, with ``event`` 1/0).
        kind: ``continuous`` (squared error), ``binary`` (cross-entropy) or ``survival``
            (discrete-time hazard likelihood: an event in bin j adds log h_j and log(1 - h_k),
            k < j; a censored time in bin j adds log(1 - h_k), k < j).
    """
    parts = split_outputs(outputs, n_arms=n_arms, n_outputs=n_outputs)
    arm = target[:, 0].long()
    own = parts.arm[torch.arange(len(arm)), arm]  # (B, K)
    y = target[:, 1]
    if kind == "continuous":
        loss = F.mse_loss(own[:, 0], y)
    elif kind == "binary":
        loss = F.binary_cross_entropy_with_logits(own[:, 0], y)
    else:
        loss = discrete_time_nll(own, target[:, 1:3])
    if propensity_weight > 0:
        loss = loss + propensity_weight * F.cross_entropy(parts.propensity, arm)
    return loss


__all__ = [
    "EffectCorrection", "EffectTrees", "MultiArmNet", "MultiArmOutputs", "TreatmentEnsemble", "TreatmentModel", "contrast_module", "fit_effect_trees", "multiarm_loss", "stack_weights",
    "risk_at_horizon", "rmst", "split_outputs", "survival_at_edges", "treatment_ensemble_spec",
]
