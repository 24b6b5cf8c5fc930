"""tumorscope compare: paired differences on hand-made metrics files, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tumorscope.cli import main
from tumorscope.errors import TumorscopeError
from tumorscope.evaluation.compare import (
    comparison_markdown,
    load_evaluations,
    paired_differences,
)

# four slices of two patients; "has_tumour" slices 1, 2 and 3
SLICES = [("1", "p1", True), ("2", "p1", True), ("3", "p2", True), ("4", "p2", False)]


def _metrics(path: Path, correct: list[bool], dice: list[float], fold: int = 0,
             volumes: dict[str, float] | None = None, checkpoint: Path | None = None,
             segments: bool = True, timing: dict[str, object] | None = None) -> Path:
    """A metrics.json of a joint model, or (``segments=False``) of a classifier."""
    per_image = [{"id": i, "patient": p, "image": f"{i}.png", "true": "a",
                  "predicted": "a" if ok else "b", "dice": d, "has_tumour": t}
                 for (i, p, t), ok, d in zip(SLICES, correct, dice, strict=True)]
    tumour = [d for (_, _, t), d in zip(SLICES, dice, strict=True) if t]
    scores = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    m = {"checkpoint": str(checkpoint or path / "nowhere"), "model_id": path.name, "fold": fold,
         "fold_role": "test", "dataset": "toy",
         "split": {"test_fold": fold, "slices": 4, "patients": 2},
         "classification": {"accuracy": sum(correct) / 4, "macro_f1": 0.5,
                            "per_class": {"a": scores, "b": scores},
                            "confusion_matrix": [[2, 0], [2, 0]], "classes": ["a", "b"]},
         "segmentation": {"dice_mean_tumour": sum(tumour) / len(tumour), "dice_mean": 0.5,
                          "iou_mean": 0.5, "iou_mean_tumour": 0.5, "dice_pooled": 0.5,
                          "iou_pooled": 0.5, "images": 4, "tumour_images": 3}
         if segments else None,
         "confidence_intervals_95": {"accuracy": [0.0, 1.0]}, "per_image": per_image}
    if timing is not None:
        m["timing"] = timing
    if volumes is not None:
        m["volumes"] = {"per_patient": volumes, "patients": len(volumes),
                        "dice_mean_per_patient": sum(volumes.values()) / len(volumes),
                        "detection": {"sensitivity": 1.0, "specificity": 0.5, "tp": 1,
                                      "tn": 1, "fp": 1, "fn": 0}}
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(m))
    return path / "metrics.json"


def test_paired_differences_by_hand(tmp_path: Path) -> None:
    a = _metrics(tmp_path / "a", [True, False, False, True], [0.5, 0.5, 0.2, 1.0],
                 volumes={"p1": 0.5, "p2": 0.4})
    b = _metrics(tmp_path / "b", [True, True, True, True], [0.7, 0.9, 0.2, 0.0],
                 volumes={"p1": 0.9, "p2": 0.4})
    diff = paired_differences(*load_evaluations([a, b]))
    assert diff["accuracy"][0] == pytest.approx(0.5)            # 4/4 - 2/4
    assert diff["dice_mean_tumour"][0] == pytest.approx(0.6 / 3)  # only tumour slices count
    assert diff["dice_per_patient"][0] == pytest.approx(0.2)
    for value, low, high in diff.values():
        assert low <= value + 1e-12 and value <= high + 1e-12
    # patient p2 gains nothing in Dice: a bootstrap sample of p2 twice gives a difference of 0
    assert diff["dice_mean_tumour"][1] == pytest.approx(0.0)


def test_compare_cli_writes_markdown_and_chart(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures import save_random_model

    model = save_random_model(tmp_path / "model")
    a = _metrics(tmp_path / "a", [True, False, False, True], [0.5, 0.5, 0.2, 1.0],
                 checkpoint=model)
    b = _metrics(tmp_path / "b", [True, True, True, True], [0.7, 0.9, 0.2, 0.0])
    out = tmp_path / "docs" / "cmp.md"
    assert main(["compare", str(a.parent), str(b), "--names", "old", "new",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| accuracy | 0.500 [0.000, 1.000] | 1.000 [0.000, 1.000] |" in text
    assert "| new | +0.500" in text and "--names old new" in text
    assert "| architecture | unet + resnet18 (from scratch), 64 px |  |" in text  # from the card
    assert Image.open(out.with_suffix(".png")).size[0] > 100


def test_compare_refuses_mismatched_or_wrong_files(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    a = _metrics(tmp_path / "a", [True] * 4, [1.0] * 4)
    other_fold = _metrics(tmp_path / "b", [True] * 4, [1.0] * 4, fold=1)
    with pytest.raises(TumorscopeError, match="fold 1 differs"):
        load_evaluations([a, other_fold])
    with pytest.raises(TumorscopeError, match="at least two"):
        load_evaluations([a])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["compare", str(a), str(bad), "--out", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "JSON" in err and "Traceback" not in err
    assert not (tmp_path / "c.md").exists() and not (tmp_path / "c.png").exists()
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"accuracy": 1}))
    with pytest.raises(TumorscopeError, match=r"not a metrics\.json"):
        load_evaluations([a, report])


def _case_metrics(path: Path, dice: dict[str, float], cases: tuple[str, ...] = ("c1", "c2")
                  ) -> Path:
    from tumorscope.brats_metrics import summarise

    per_case = {c: {f"{r}_{m}": (dice[r] if m == "dice" else 5.0) - 0.1 * k
                    for r in ("WT", "TC", "ET") for m in ("dice", "hd95")}
                for k, c in enumerate(cases)}
    m = {"checkpoint": str(path / "nowhere"), "model_id": path.name, "fold": 0,
         "fold_role": "test", "dataset": "brats",
         "split": {"test_fold": 0, "slices": 0, "patients": len(cases)},
         "cases": {"per_case": per_case, "summary": summarise(per_case),
                   "seconds_per_case": 3.0}}
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(m))
    return path


def test_brats_results_compare_per_region(tmp_path: Path) -> None:
    a = _case_metrics(tmp_path / "two-d", {"WT": 0.8, "TC": 0.6, "ET": 0.5})
    b = _case_metrics(tmp_path / "three-d", {"WT": 0.9, "TC": 0.6, "ET": 0.7})
    evaluations = load_evaluations([a, b])
    diff = paired_differences(*evaluations)
    assert diff["WT_dice"][0] == pytest.approx(0.1) and diff["TC_dice"][0] == pytest.approx(0.0)
    assert diff["ET_dice"][0] == pytest.approx(0.2)
    out = tmp_path / "cmp.md"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    assert "2 cases, the same in every column" in text and "| Dice WT |" in text
    assert "| HD95 mm ET |" in text and "CPU seconds per case" in text
    assert Image.open(out.with_suffix(".png")).size[0] > 100
    c = _case_metrics(tmp_path / "other", {"WT": 0.8, "TC": 0.6, "ET": 0.5}, ("c1", "c3"))
    with pytest.raises(TumorscopeError, match="other slices or cases"):
        load_evaluations([a, c])


def test_joint_and_classifier_side_by_side(tmp_path: Path) -> None:
    from fixtures import save_random_classifier, save_random_model
    from tumorscope.checkpoint.store import load_checkpoint
    from tumorscope.models.capsule import count_parameters

    joint_model = save_random_model(tmp_path / "joint-model")
    classifier_model = save_random_classifier(tmp_path / "cls-model", ("a", "b"))
    timing = {"ms_per_slice": 12.34, "batch_size": 16, "threads": 2, "backend": "torch"}
    joint = _metrics(tmp_path / "joint", [True, False, False, True], [0.5, 0.5, 0.2, 1.0],
                     volumes={"p1": 0.5, "p2": 0.4}, checkpoint=joint_model, timing=timing)
    # a classifier on LGG-like slices: volumes as an older evaluate wrote them (empty masks)
    classifier = _metrics(tmp_path / "cls", [True, True, True, True], [0.0, 0.0, 0.0, 1.0],
                          volumes={"p1": 0.0, "p2": 0.0}, checkpoint=classifier_model,
                          segments=False)
    diff = paired_differences(*load_evaluations([joint, classifier]))
    assert set(diff) == {"accuracy"}  # no Dice difference against a model without masks
    assert diff["accuracy"][0] == pytest.approx(0.5)

    out = tmp_path / "cmp.md"
    for order in ([classifier, joint], [joint, classifier]):
        assert main(["compare", *map(str, order), "--out", str(out)]) == 0
        rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:]
                for line in out.read_text().splitlines() if line.startswith("| ")}
        cls_first = order[0] == classifier
        cell = {"joint": 1 if cls_first else 0, "cls": 0 if cls_first else 1}
        assert rows["Dice, tumour slices"][cell["cls"]] == "-"
        assert rows["Dice, tumour slices"][cell["joint"]].startswith("0.400")
        assert rows["Dice per patient volume"][cell["cls"]] == "-"
        assert rows["F1 a"] == ["0.500", "0.500"] and rows["F1 b"] == ["0.500", "0.500"]
        assert rows["CPU ms per slice"][cell["joint"]] == "12.3 (torch, 2 threads, batch 16)"
        assert rows["CPU ms per slice"][cell["cls"]] == "-"  # a file without timing
        params = rows["parameters (whole network)"]
        joint_net, classifier_net = load_checkpoint(joint_model)[0], \
            load_checkpoint(classifier_model)[0]
        assert params[cell["cls"]] == f"{count_parameters(classifier_net) / 1e6:.2f}M"
        assert params[cell["joint"]].startswith(f"{count_parameters(joint_net) / 1e6:.2f}M (")
        assert params[cell["joint"]].endswith("M decoder)")
        assert "Dice, tumour slices" not in rows["model"]  # the differences table: accuracy
        assert "paired only between models that both segment" in out.read_text()
    assert Image.open(out.with_suffix(".png")).size[0] > 100


def test_missing_model_folder_and_timing_show_a_dash(tmp_path: Path) -> None:
    a = _metrics(tmp_path / "a", [True] * 4, [1.0] * 4)
    b = _metrics(tmp_path / "b", [True] * 4, [1.0] * 4, timing={
        "ms_per_slice": 3.0, "batch_size": 8, "threads": None, "backend": "onnx", "slices": 4})
    evaluations = load_evaluations([a, b])
    assert evaluations[0].parameters is None and evaluations[1].metrics.timing is not None
    text = comparison_markdown(evaluations)
    assert "| parameters (whole network) | - | - |" in text
    assert "| CPU ms per slice | - | 3.0 (onnx, default threads, batch 8) |" in text


@pytest.fixture(scope="module")
def evaluated_pair(mat_dataset: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, Path]:
    """An untrained joint model and an untrained classifier on the same tiny split, each
    saved with its card and evaluated on fold 0 (metrics.json paths)."""
    import torch

    from fixtures import write_config
    from tumorscope.checkpoint.card import build_card
    from tumorscope.checkpoint.store import save_checkpoint
    from tumorscope.config import load_config
    from tumorscope.data.prepare import prepare_split
    from tumorscope.evaluation.evaluate import evaluate
    from tumorscope.tasks.registry import get_task
    from tumorscope.transforms.slice2d import card_preprocessing

    tmp = tmp_path_factory.mktemp("evaluated_pair")
    classify = tmp / "cls.yaml"
    classify.write_text(f"""name: tinycls
task: classify
seed: 3
data: {{dataset: figshare-mat, root: {mat_dataset}, folds: 3, test_fold: 0, val_fold: 1,
        fold_source: computed}}
model: {{arch: timm, name: resnet18, encoder_weights: none, input_size: 64}}
""")
    out = []
    for name, config in (("joint", write_config(tmp, mat_dataset)), ("cls", classify)):
        cfg = load_config(config)
        index, split = prepare_split(cfg)
        card = build_card(cfg, index, split, card_preprocessing(cfg, (0.2, 0.3)))
        torch.manual_seed(0)
        net = get_task(card.task).load("network")(card.model, len(card.classes),
                                                  load_pretrained=False)
        save_checkpoint(tmp / name / "model", net.state_dict(), card)
        evaluate(tmp / name / "model", 0, tmp / name / "eval", batch_size=5, gallery=2)
        out.append(tmp / name / "eval" / "metrics.json")
    return out[0], out[1]


def test_evaluate_records_network_time_per_slice(evaluated_pair: tuple[Path, Path]) -> None:
    import torch

    for path in evaluated_pair:
        timing = json.loads(path.read_text())["timing"]
        assert timing["ms_per_slice"] > 0 and timing["batch_size"] == 5
        assert timing["backend"] == "torch" and timing["threads"] == torch.get_num_threads()
        assert timing["slices"] == 12
    assert json.loads(evaluated_pair[1].read_text())["segmentation"] is None


def test_compare_an_evaluated_joint_model_and_classifier(evaluated_pair: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "classifiers.md"
    assert main(["compare", *map(str, evaluated_pair), "--names", "joint", "resnet18",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "| resnet18 | " in text and "M decoder) | 11.17M |" in text
    assert ("| architecture | unet + resnet18 (from scratch), 64 px | resnet18 (from scratch), "
            "64 px |") in text
    assert "| Dice, tumour slices | " in text and " | - |" in text
    assert text.count("(torch, ") == 2
