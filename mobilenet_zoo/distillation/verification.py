"""Face verification on pairs (LFW protocol style): pairs, accuracy, TAR at FAR."""

from __future__ import annotations

import numpy as np


def make_pairs(labels, num_pairs: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (i, j) index pairs, half same identity, half different.

    Returns ``pairs (n, 2)`` and ``same (n,)`` bool.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_id: dict = {}
    for i, lab in enumerate(labels):
        by_id.setdefault(lab, []).append(i)
    multi = [v for v in by_id.values() if len(v) >= 2]
    if not multi or len(by_id) < 2:
        raise ValueError("Need at least one identity with two images and two identities.")
    same, diff = set(), set()
    half = num_pairs // 2
    for _ in range(20 * half):
        if len(same) >= half:
            break
        group = multi[rng.integers(len(multi))]
        i, j = rng.choice(group, 2, replace=False)
        same.add((min(i, j), max(i, j)))
    for _ in range(20 * half):
        if len(diff) >= half:
            break
        i, j = rng.integers(len(labels), size=2)
        if labels[i] != labels[j]:
            diff.add((min(i, j), max(i, j)))
    pairs = np.array(sorted(same) + sorted(diff), np.int64).reshape(-1, 2)
    return pairs, np.array([True] * len(same) + [False] * len(diff))


def verification_metrics(embeddings, pairs, same, fars=(1e-3, 1e-4)) -> dict:
    """Accuracy (threshold chosen on even pairs, measured on odd) and TAR at each FAR.

    TAR at FAR f: the distance threshold lets through a fraction f of different
    pairs; TAR is the fraction of same pairs under it. ``num_different_pairs``
    says how finely FAR can be resolved (1e-4 needs 10,000 or more).
    """
    e = np.asarray(embeddings, np.float64)
    d = np.sum((e[pairs[:, 0]] - e[pairs[:, 1]]) ** 2, axis=1)
    same = np.asarray(same, bool)
    fit, test = np.arange(len(d)) % 2 == 0, np.arange(len(d)) % 2 == 1
    candidates = np.unique(d[fit])
    accs = [np.mean((d[fit] <= t) == same[fit]) for t in candidates]
    threshold = candidates[int(np.argmax(accs))] if len(candidates) else 0.0
    out = {"accuracy": float(np.mean((d[test] <= threshold) == same[test])),
           "threshold": float(threshold), "num_pairs": int(len(d)),
           "num_different_pairs": int((~same).sum())}
    neg = np.sort(d[~same])
    for far in fars:
        k = int(np.floor(far * len(neg)))
        thr = neg[k - 1] if k >= 1 else (neg[0] - 1e-12 if len(neg) else 0.0)
        out[f"tar@far={far:g}"] = float(np.mean(d[same] <= thr)) if same.any() else 0.0
    return out
