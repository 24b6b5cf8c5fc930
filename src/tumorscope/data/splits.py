"""Patient-level k-fold splits: stratified by class, grouped by patient, seeded."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.errors import ConfigError, ScanReadError


def patient_folds(records: list[Record], n_folds: int, seed: int) -> dict[str, int]:
    """Assign every patient to one fold, stratified by the patient's label (the highest
    slice label: the tumour type in figshare, "has tumour slices" in LGG). Seeded."""
    from sklearn.model_selection import StratifiedKFold

    strata: dict[str, int] = {}
    for r in records:
        strata[r.patient] = max(strata.get(r.patient, r.label), r.label)
    patients = sorted(strata)
    if len(patients) < n_folds:
        raise ConfigError("data.folds", f"{len(patients)} patient(s) cannot fill {n_folds} "
                          f"folds; set data.folds to at most {len(patients)} (at least 2) or "
                          "add patients")
    labels = np.array([strata[p] for p in patients])
    if np.bincount(labels).min(initial=n_folds) < n_folds:  # a rare stratum: plain shuffle
        labels = np.zeros_like(labels)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of: dict[str, int] = {}
    for fold, (_, test_idx) in enumerate(splitter.split(np.zeros(len(patients)), labels)):
        for i in test_idx:
            fold_of[patients[i]] = fold
    return fold_of


def uses_shipped_folds(index: DatasetIndex, n_folds: int, source: str) -> bool:
    """Whether the split is the dataset's own: every record has a shipped fold, there are
    ``n_folds`` of them and ``source`` is 'dataset'."""
    shipped = [r.fold for r in index.records if r.fold is not None]
    return source == "dataset" and len(shipped) == len(index.records) \
        and set(shipped) == set(range(n_folds))


def assign_folds(index: DatasetIndex, n_folds: int, seed: int, source: str) -> dict[str, int]:
    """Fold of each patient: the dataset's own split when it has one with ``n_folds`` folds
    and ``source`` is 'dataset', else computed (patient-grouped, stratified; e.g. 7-fold
    cross-validation on figshare, which ships 5). Raises if a shipped split puts a patient in
    two folds."""
    if uses_shipped_folds(index, n_folds, source):
        fold_of: dict[str, int] = {}
        for r in index.records:
            if fold_of.setdefault(r.patient, int(r.fold)) != r.fold:  # type: ignore[arg-type]
                raise ScanReadError(index.root, f"patient {r.patient} appears in folds "
                                    f"{fold_of[r.patient]} and {r.fold} of the shipped split")
        return fold_of
    try:
        return patient_folds(index.records, n_folds, seed)
    except ConfigError as err:
        raise ConfigError(index.root, f"data.folds: {err.problem}") from None


@dataclass
class Split:
    """Records for training, validation (model selection) and the held-out test fold."""

    train: list[Record]
    val: list[Record]
    test: list[Record]
    test_fold: int
    val_fold: int | None

    def describe(self) -> dict[str, object]:
        """Counts of slices and patients per part, for reports and model cards."""
        def part(rs: list[Record]) -> dict[str, object]:
            return {"slices": len(rs), "patients": len({r.patient for r in rs}),
                    "labels": dict(sorted(Counter(r.label for r in rs).items()))}
        return {"test_fold": self.test_fold, "val_fold": self.val_fold,
                "train": part(self.train), "val": part(self.val), "test": part(self.test)}


def make_split(index: DatasetIndex, n_folds: int, test_fold: int, val_fold: int | None,
               seed: int, source: str = "dataset") -> Split:
    """Split by patient: ``test_fold`` held out, ``val_fold`` for validation, rest trains."""
    fold_of = assign_folds(index, n_folds, seed, source)
    parts: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in index.records:
        fold = fold_of[r.patient]
        key = "test" if fold == test_fold else "val" if fold == val_fold else "train"
        parts[key].append(r)
    return Split(parts["train"], parts["val"], parts["test"], test_fold, val_fold)
