"""How far to trust a prediction, in NumPy: calibration (expected calibration error,
reliability bins, temperature scaling), the tumour / no-tumour operating point and
out-of-distribution scores. Everything here is fitted on a validation fold, never a test fold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NO_TUMOUR = ("no tumour", "no_tumour", "notumor", "no tumor", "healthy")


def no_tumour_class(classes: list[str]) -> str | None:
    """The class meaning "no tumour", if the model has one."""
    return next((c for c in classes if c.lower() in NO_TUMOUR), None)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def mutual_information(per_pass: np.ndarray) -> np.ndarray:
    """Epistemic uncertainty of sampled predictions ``(passes, B, K)``: the entropy of the
    mean prediction minus the mean entropy of each pass (BALD; 0 when every pass agrees)."""
    per_pass = np.asarray(per_pass, dtype=np.float64)
    return np.maximum(entropy(per_pass.mean(axis=0)) - entropy(per_pass).mean(axis=0), 0.0)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Top-label reliability: per equal-width confidence bin, the mean confidence, the
    accuracy (None in an empty bin) and the count; ``ece`` is their count-weighted mean gap
    (Guo et al. 2017)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows: list[dict[str, float | None]] = []
    ece = 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        conf = float(confidence[inside].mean()) if n else None
        acc = float(correct[inside].mean()) if n else None
        if conf is not None and acc is not None:
            ece += n / len(labels) * abs(acc - conf)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n,
                     "confidence": conf, "accuracy": acc})
    return {"ece": float(ece), "bins": rows}


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = softmax(logits, temperature)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (searched on log T in [1/20, 20])."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))),
                             bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (NaN with one class only)."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


YOUDEN_RULE = "maximising sensitivity + specificity"  # how a card names this rule


def youden_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The score threshold (``score >= t`` is positive) maximising sensitivity + specificity."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(positive, dtype=bool), scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def false_alarm_threshold(scores: np.ndarray, positive: np.ndarray, max_rate: float) -> float:
    """The lowest score threshold (``score >= t`` is positive) whose false-alarm rate is at
    most ``max_rate``: the most positives caught within that budget of false alarms."""
    from sklearn.metrics import roc_curve

    fpr, _, thresholds = roc_curve(np.asarray(positive, dtype=bool), scores,
                                   drop_intermediate=False)
    within = np.flatnonzero(fpr <= max_rate)  # fpr rises along the curve; the first is 0
    return float(min(thresholds[within[-1]], 1.0))


def operating_point(scores: np.ndarray, positive: np.ndarray, threshold: float
                    ) -> dict[str, float]:
    """Sensitivity (tumours caught), specificity and false-alarm rate at ``threshold``."""
    positive = np.asarray(positive, dtype=bool)
    called = np.asarray(scores) >= threshold
    sens = float(called[positive].mean()) if positive.any() else float("nan")
    spec = float((~called[~positive]).mean()) if (~positive).any() else float("nan")
    return {"sensitivity": sens, "specificity": spec, "false_alarm_rate": 1 - spec}


def quantiles(values: np.ndarray, count: int = 101) -> list[float]:
    """``count`` evenly spaced quantiles of ``values`` (a compact reference distribution)."""
    return [float(q) for q in np.quantile(np.asarray(values, dtype=np.float64),
                                          np.linspace(0, 1, count))]


def typicality(value: float | np.ndarray, reference: list[float]) -> np.ndarray:
    """Share of the reference distribution (given by its quantiles) at or above ``value``:
    1 for the most typical, 0 beyond anything seen in validation."""
    ref = np.asarray(reference, dtype=np.float64)
    levels = np.linspace(1, 0, len(ref))
    return np.interp(np.asarray(value, dtype=np.float64), ref, levels, left=1.0, right=0.0)
