"""Patient-level splits: no patient on both sides, deterministic, stratified."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumorscope.data.records import DatasetIndex, Record
from tumorscope.data.splits import make_split, patient_folds
from tumorscope.errors import ScanReadError


def _index(n_patients: int = 30, with_folds: bool = False) -> DatasetIndex:
    records = []
    for p in range(n_patients):
        for s in range(1 + p % 4):
            records.append(Record(f"{p}-{s}", Path(f"{p}-{s}.png"), None, p % 3, f"P{p}",
                                  fold=p % 5 if with_folds else None))
    return DatasetIndex("t", Path("."), ["a", "b", "c"], records)


@pytest.mark.parametrize("test_fold,val_fold", [(0, 1), (3, None), (4, 2)])
def test_no_patient_on_two_sides(test_fold: int, val_fold: int | None) -> None:
    split = make_split(_index(), 5, test_fold, val_fold, seed=7, source="computed")
    sides = [{r.patient for r in part} for part in (split.train, split.val, split.test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert sum(len(p) for p in (split.train, split.val, split.test)) == len(_index().records)
    assert split.test and (val_fold is None or split.val)


def test_every_patient_in_exactly_one_fold_and_seeded() -> None:
    records = _index().records
    a = patient_folds(records, 5, seed=1)
    assert set(a) == {r.patient for r in records} and set(a.values()) == set(range(5))
    assert a == patient_folds(records, 5, seed=1)
    assert a != patient_folds(records, 5, seed=2)


def test_folds_are_stratified() -> None:
    fold_of = patient_folds(_index(60).records, 3, seed=0)
    for fold in range(3):
        labels = [int(p[1:]) % 3 for p, f in fold_of.items() if f == fold]
        assert {labels.count(c) for c in range(3)} <= set(range(5, 9))


def test_shipped_folds_are_used() -> None:
    split = make_split(_index(with_folds=True), 5, 0, 1, seed=0, source="dataset")
    assert all(int(r.patient[1:]) % 5 == 0 for r in split.test)
    assert all(int(r.patient[1:]) % 5 == 1 for r in split.val)


def test_shipped_split_with_patient_in_two_folds_is_refused() -> None:
    index = _index(with_folds=True)
    r = index.records[0]
    other_fold = (r.fold + 1) % 5
    index.records.append(Record("x", Path("x.png"), None, r.label, r.patient, fold=other_fold))
    with pytest.raises(ScanReadError, match="appears in folds"):
        make_split(index, 5, 0, 1, seed=0)


def test_source_weights_per_record_and_unknown_sources_refused() -> None:
    import numpy as np

    from tumorscope.config import build_config
    from tumorscope.data.prepare import source_weights
    from tumorscope.errors import ConfigError

    records = [Record(f"{s}/{i}", Path(f"{i}.png"), None, 0, f"P{i}", source=s)
               for i, s in enumerate(["figshare", "lgg", "figshare", "brats"])]
    assert source_weights(records, None) is None
    np.testing.assert_array_equal(source_weights(records, {"figshare": 2.5}), [2.5, 1, 2.5, 1])
    with pytest.raises(ConfigError, match="figshar"):
        source_weights(records, {"figshar": 2})  # a typo is not silently ignored
    with pytest.raises(ConfigError, match="positive"):
        build_config({"data": {"source_weights": {"figshare": 0}}})
    with pytest.raises(ConfigError, match="one dataset"):
        build_config({"task": "brats", "data": {"source_weights": {"brats": 2}}})
