"""LA-MCTS-guided Bayesian optimisation over a pool, written from Wang, Fonseca and Tian,
"Learning Search Space Partition for Black-box Optimization using Monte Carlo Tree Search"
(NeurIPS 2020), which the GPUNet paper uses (section 3.3).

Per ask: (1) a tree is rebuilt from every told sample: a node holding more than ``leaf_size``
samples clusters them by k-means (k=2) on (x, f(x)) into a good and a bad cluster, an SVM learns
that boundary in x, and the node splits only if its SVM puts its own samples on both sides;
(2) UCB descends from the root to a leaf; (3) the SVMs on that path cut the pool's untold rows
down to the leaf's region; (4) a Gaussian process fitted on the told samples ranks the region's
rows by expected improvement. Proposals are pool rows, so they never leave a latency group.
scikit-learn (k-means, SVC, GaussianProcessRegressor) is imported on first use.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from .base import SearchAlgorithm

__all__ = ["LaMCTS"]


@dataclass
class _Node:
    rows: np.ndarray                      # indices into the told-sample arrays
    depth: int
    svm: object = None                    # boundary: predict() True = good side
    children: List["_Node"] = field(default_factory=list)   # [good, bad] when split


class LaMCTS(SearchAlgorithm):
    """LA-MCTS + GP expected improvement in pool mode. Maximises the told values.

    Options (defaults chosen to work across objectives, not tuned to one):

    - ``n_init`` (20): the first asks form a space-filling design (greedy maximin over the pool).
    - ``leaf_size`` (20): a node with more told samples than this tries to split.
    - ``cp`` (0.1): UCB exploration, relative to the spread (best - worst) of the told values, so
      it does not depend on the objective's offset or units.
    - ``kernel`` ("rbf"): the SVMs' kernel (``"linear"``, ``"rbf"``, ``"poly"``).
    - ``max_depth`` (6): the tree's depth limit.
    - ``gp_max_samples`` (300): GP training-set cap (the leaf's samples first, then the best others).
    - ``ard`` (False): one GP length scale per gene instead of one for all (slower to fit).
    - ``max_candidates`` (20000): pool rows scored per ask (a random subset of the untold rows beyond that).

    Failed evaluations (``tell(x, None)``) are imputed as the worst value seen, so the tree and the
    GP steer away from their region. Rows in flight (asked, not told) are not re-proposed, and the
    EI of rows near them (and near rows already picked in the same batch) is damped by the GP's
    correlation, so a batch spreads out instead of stacking on one optimum.
    """

    defaults = {"n_init": 20, "leaf_size": 20, "cp": 0.1, "kernel": "rbf", "max_depth": 6,
                "gp_max_samples": 300, "max_candidates": 20000, "ard": False}

    def __init__(self, pool, seed: int = 0, **opts):
        super().__init__(pool, seed, **opts)
        o = self.options
        for key in ("n_init", "leaf_size", "max_depth", "gp_max_samples", "max_candidates"):
            v = o[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if key == "n_init" else 1):
                raise ValueError(f"LaMCTS: option {key} must be a {'non-negative' if key == 'n_init' else 'positive'} "
                                 f"int, got {v!r}")
        if not isinstance(o["cp"], (int, float)) or o["cp"] < 0:
            raise ValueError(f"LaMCTS: option cp must be a number >= 0, got {o['cp']!r}")
        if o["kernel"] not in ("linear", "rbf", "poly"):
            raise ValueError(f"LaMCTS: option kernel must be 'linear', 'rbf' or 'poly', got {o['kernel']!r}")
        self.last_path: List[int] = []    # 0 = good child, 1 = bad child, per level of the last ask

    # -- the two phases -----------------------------------------------------------------------
    def _propose(self, n: int, available: np.ndarray) -> np.ndarray:
        n_ok = sum(v is not None for _, v in self._told)
        k_init = max(0, self.options["n_init"] - self.n_told - self.n_pending)
        if n_ok < 2:
            k_init = n
        k_init = min(n, k_init)
        chosen = self._maximin(k_init, available) if k_init else np.empty(0, dtype=np.int64)
        if k_init < n:
            rest = np.setdiff1d(available, chosen, assume_unique=True)
            chosen = np.concatenate([chosen, self._model_pick(n - k_init, rest, extra_busy=chosen)])
        return chosen

    def _maximin(self, n: int, available: np.ndarray) -> np.ndarray:
        """Greedy maximin: each pick is the row farthest from everything told, in flight or picked."""
        cand = available
        if len(cand) > 4000:
            cand = np.sort(self.rng.choice(cand, size=4000, replace=False))
        U = self.unit[cand]
        busy = [i for i, _ in self._told] + list(self._pending)
        if busy:
            d = np.full(len(cand), np.inf)
            for chunk in np.array_split(np.asarray(busy), max(1, len(busy) // 512)):
                d = np.minimum(d, _sqdist(U, self.unit[chunk]).min(axis=1))
            first = int(np.argmax(d))
        else:
            first = int(self.rng.integers(len(cand)))
            d = np.full(len(cand), np.inf)
        picks = []
        for _ in range(n):
            j = first if not picks and not busy else int(np.argmax(d))
            picks.append(j)
            d = np.minimum(d, ((U - U[j]) ** 2).sum(axis=1))
            d[j] = -1.0
        return cand[np.asarray(picks, dtype=np.int64)]

    def _samples(self) -> Tuple[np.ndarray, np.ndarray]:
        """Told rows and values, failures imputed as the worst value seen."""
        rows = np.asarray([i for i, _ in self._told], dtype=np.int64)
        vals = np.asarray([np.nan if v is None else v for _, v in self._told], dtype=np.float64)
        vals[np.isnan(vals)] = np.nanmin(vals)
        return rows, vals

    def _model_pick(self, n: int, available: np.ndarray, extra_busy: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        # The matrices are small: one BLAS / OpenMP thread is faster than many contending ones
        # (a busy machine made a 200x200 Cholesky take 0.3 s with threads spinning).
        with threadpool_limits(limits=1):
            return self._model_pick_1(n, available, extra_busy)

    def _model_pick_1(self, n: int, available: np.ndarray, extra_busy: np.ndarray) -> np.ndarray:
        rows, y = self._samples()
        X = self.unit[rows]
        model_seed = int(self.rng.integers(2 ** 31 - 1))
        root = self._build_tree(X, y, model_seed)
        path = self._select(root, y)
        cand = available
        if len(cand) > self.options["max_candidates"]:
            cand = np.sort(self.rng.choice(cand, size=self.options["max_candidates"], replace=False))
        region, leaf, used = self._region(root, path, cand, need=n)
        self.last_path = path[:used]
        gp = self._fit_gp(X, y, leaf.rows, model_seed)
        busy = np.concatenate([np.asarray(self._pending, dtype=np.int64), extra_busy.astype(np.int64)])
        return self._rank(gp, y.max(), region, busy, n)

    # -- tree ---------------------------------------------------------------------------------
    def _build_tree(self, X: np.ndarray, y: np.ndarray, seed: int) -> _Node:
        from sklearn.cluster import KMeans
        from sklearn.svm import SVC

        o = self.options
        root = _Node(np.arange(len(y)), 0)
        stack = [root]
        while stack:
            node = stack.pop()
            if len(node.rows) <= o["leaf_size"] or node.depth >= o["max_depth"]:
                continue
            Xn, yn = X[node.rows], y[node.rows]
            if np.ptp(yn) == 0:
                continue
            # f(x) weighted to carry as much variance as all genes together (paper: k-means on (x, f(x)))
            w = np.sqrt(max(Xn.var(axis=0).sum(), 1e-12)) / yn.std()
            Z = np.hstack([Xn, (w * (yn - yn.mean()))[:, None]])
            labels = KMeans(n_clusters=2, n_init=3, random_state=seed).fit(Z).labels_
            if labels.min() == labels.max():
                continue
            good = labels == int(yn[labels == 1].mean() > yn[labels == 0].mean())
            # gamma as sklearn's "scale", but stored so _good_side can evaluate the kernel itself
            gamma = 1.0 / (Xn.shape[1] * max(float(Xn.var()), 1e-12))
            svm = SVC(kernel=o["kernel"], gamma=gamma, C=1.0)
            svm.fit(Xn, good)
            side = _good_side(svm, Xn)
            if side.all() or not side.any():
                continue  # the SVM cannot separate the clusters: this node stays a leaf
            node.svm = svm
            node.children = [_Node(node.rows[side], node.depth + 1), _Node(node.rows[~side], node.depth + 1)]
            stack.extend(node.children)
        return root

    def _select(self, root: _Node, y: np.ndarray) -> List[int]:
        """UCB descent: mean value + 2 Cp sqrt(2 ln n_parent / n_child), Cp relative to the spread."""
        cp = self.options["cp"] * float(np.ptp(y))
        path, node = [], root
        while node.children:
            n_parent = len(node.rows)
            scores = [y[c.rows].mean() + 2 * cp * np.sqrt(2 * np.log(n_parent) / len(c.rows))
                      for c in node.children]
            k = int(np.argmax(scores))
            path.append(k)
            node = node.children[k]
        return path

    def _region(self, root: _Node, path: List[int], cand: np.ndarray, need: int):
        """Rows of ``cand`` inside the leaf's region, backing up toward the root while fewer than ``need``."""
        region, node, used = cand, root, 0
        for k in path:
            inside = _good_side(node.svm, self.unit[region])
            inside = inside if k == 0 else ~inside
            if inside.sum() < need:
                break
            region, node, used = region[inside], node.children[k], used + 1
        return region, node, used

    # -- GP + expected improvement --------------------------------------------------------------
    def _fit_gp(self, X: np.ndarray, y: np.ndarray, leaf_rows: np.ndarray, seed: int):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        cap = self.options["gp_max_samples"]
        keep = np.arange(len(y))
        if len(y) > cap:
            leaf = leaf_rows[np.argsort(-y[leaf_rows], kind="stable")][:cap]
            others = np.setdiff1d(keep, leaf)
            others = others[np.argsort(-y[others], kind="stable")][:cap - len(leaf)]
            keep = np.concatenate([leaf, others])
        d = X.shape[1]
        ls = np.full(d, 0.5) if self.options["ard"] else 0.5 * np.sqrt(d)
        kernel = (ConstantKernel(1.0, (1e-3, 1e3))
                  * Matern(length_scale=ls, length_scale_bounds=(1e-2, 1e2), nu=2.5)
                  + WhiteKernel(1e-3, (1e-6, 1e-1)))
        gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning on hyper-parameter bounds
            gp.fit(X[keep], y[keep])
        return gp

    def _rank(self, gp, y_best: float, region: np.ndarray, busy: np.ndarray, n: int) -> np.ndarray:
        from scipy.stats import norm

        U = self.unit[region]
        mu, sd = gp.predict(U, return_std=True)
        sd = np.maximum(sd, 1e-12)
        z = (mu - y_best) / sd
        ei = (mu - y_best) * norm.cdf(z) + sd * norm.pdf(z)
        ei = np.maximum(ei, 0.0) + 1e-300 * mu.argsort().argsort()  # ties (EI underflow) broken by the mean
        ls = np.atleast_1d(gp.kernel_.k1.k2.length_scale)
        Us = U / ls
        penalty = np.ones(len(region))
        for b in busy:
            penalty *= 1.0 - np.exp(-0.5 * ((Us - self.unit[b] / ls) ** 2).sum(axis=1))
        picks = []
        score = ei * penalty
        for _ in range(n):
            j = int(np.argmax(score))
            picks.append(j)
            score = score * (1.0 - np.exp(-0.5 * ((Us - Us[j]) ** 2).sum(axis=1)))
            score[j] = -np.inf
        return region[np.asarray(picks, dtype=np.int64)]


def _good_side(svm, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``svm.predict(X) == True`` for a fitted binary ``SVC``, as one matrix product per chunk.

    The same decision function (``dual_coef_ . K(X, support_vectors_) + intercept_``) that
    libsvm's per-row loop evaluates; with 10^4-10^5 pool rows this is what makes ``ask`` fast.
    """
    if svm.classes_.shape[0] != 2:
        return np.full(len(X), bool(svm.classes_[0]))
    sv, coef, b = svm.support_vectors_, svm.dual_coef_[0], float(svm.intercept_[0])
    out = np.empty(len(X), dtype=bool)
    for s in range(0, len(X), chunk):
        A = X[s:s + chunk]
        if svm.kernel == "linear":
            K = A @ sv.T
        elif svm.kernel == "rbf":
            K = np.exp(-svm.gamma * _sqdist(A, sv))
        else:  # poly
            K = (svm.gamma * (A @ sv.T) + svm.coef0) ** svm.degree
        out[s:s + chunk] = (K @ coef + b) > 0
    positive = bool(svm.classes_[1])
    return out if positive else ~out


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T, 0.0)
