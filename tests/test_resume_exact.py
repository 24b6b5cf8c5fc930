"""An interrupted run, resumed from its mid-epoch checkpoint, ends with exactly the weights
of an uninterrupted run: same batches, same augmentation, same dropout, same EMA."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from fixtures import write_config
from tumorscope.config import load_config
from tumorscope.data.sampling import EpochOrder
from tumorscope.training.run import train

pytestmark = pytest.mark.slow


class _Interrupt(Exception):
    pass


class _StopAt(L.Callback):
    """Raises at the start of batch ``step`` (the previous step's checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.global_step == self.step:
            raise _Interrupt


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochOrder(10, seed=1), EpochOrder(10, seed=1)
    b.set_epoch(1)
    assert sorted(i for i, _ in a) == list(range(10))
    assert list(a) == list(EpochOrder(10, seed=1)) and list(a) != list(b)
    a.skip = 4
    assert list(a) == list(EpochOrder(10, seed=1))[4:] and len(list(a)) == 10  # skips once
    shards = []
    for rank in range(3):  # DDP: disjoint shards of equal length covering every sample
        s = EpochOrder(10, seed=1)
        s.rank, s.world = rank, 3
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == 4
    assert {i for shard in shards for i, _ in shard} == set(range(10))


def _last(cfg) -> dict:  # type: ignore[no-untyped-def]
    return torch.load(cfg.run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)


def test_mid_epoch_resume_matches_uninterrupted_run(tmp_path: Path, mat_dataset: Path) -> None:
    cfg_path = write_config(tmp_path, mat_dataset, epochs=2, log_every_n_steps=1)
    overrides = ["augment.enabled=true", "model.dropout=0.5"]
    straight = load_config(cfg_path, ["output.run_name=straight", *overrides])
    train(straight)
    steps_per_epoch = _last(straight)["global_step"] // 2
    stop = steps_per_epoch + steps_per_epoch // 2  # in the middle of the second epoch
    assert stop % steps_per_epoch > 0

    interrupted = load_config(cfg_path, ["output.run_name=interrupted", *overrides])
    with pytest.raises(_Interrupt):
        train(interrupted, callbacks=[_StopAt(stop)])
    step_ckpt = torch.load(interrupted.run_dir / "checkpoints" / "step.ckpt",
                           map_location="cpu", weights_only=False)
    assert step_ckpt["global_step"] == stop
    train(interrupted, resume=True)

    a, b = _last(straight)["state_dict"], _last(interrupted)["state_dict"]
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_weighted_epoch_order_draws_in_proportion_and_stays_resumable() -> None:
    weights = np.array([3.0] * 50 + [1.0] * 50)  # the first half three times as likely
    order = EpochOrder(100, seed=2, weights=weights)
    first = list(order)
    assert len(first) == 100 and first == list(EpochOrder(100, seed=2, weights=weights))
    order.skip = 30
    assert list(order) == first[30:]  # a resume continues the same draws
    drawn = [i for e in range(20) for i, _ in _epoch(order, e)]
    share = np.mean(np.array(drawn) < 50)
    assert 0.72 < share < 0.78, share  # 3 / (3 + 1) = 0.75
    with pytest.raises(ValueError, match="positive weight"):
        EpochOrder(3, seed=0, weights=np.array([1.0, 0.0, 1.0]))


def _epoch(order: EpochOrder, epoch: int) -> list[tuple[int, int]]:
    order.set_epoch(epoch)
    return list(order)


def test_a_training_seed_changes_the_batches_and_never_the_split(tmp_path: Path,
                                                                 mat_dataset: Path) -> None:
    from tumorscope.data.prepare import prepare_split
    from tumorscope.data.slices import slice_loaders

    config = write_config(tmp_path, mat_dataset)
    base = load_config(config, ["data.fold_source=computed"])
    other = load_config(config, ["data.fold_source=computed", "trainer.seed=7"])
    assert base.training_seed == base.seed != 7 and other.training_seed == 7
    splits = [prepare_split(c)[1] for c in (base, other)]
    assert [r.id for r in splits[0].train] == [r.id for r in splits[1].train]
    assert [r.id for r in splits[0].test] == [r.id for r in splits[1].test]
    orders = [list(slice_loaders(c, s).train.order)
              for c, s in zip((base, other), splits, strict=True)]
    assert orders[0] != orders[1]
    assert load_config(config, ["seed=7"]).training_seed == 7  # the old way moves both
