"""The "no tumour" outcome, calibration and the out-of-distribution flag, end to end on a
generated mixed collection (figshare compact layout + LGG + BraTS cases): dataset and folds,
training, `tumorscope calibrate` (fitted on validation only), evaluation per dataset, the
verdicts of the predictor, ONNX and the HTTP API."""

from __future__ import annotations

import csv
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fixtures import ENV, blob_slice, cli, make_lgg_dataset, module_scratch, write_brats_case


def make_figshare_compact(root: Path, patients: int = 10, slices: int = 3, size: int = 64,
                          seed: int = 1) -> Path:
    """``images/<id>.png``, ``masks/<id>.png`` and ``meta.csv`` with patient-wise folds."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, n = [], 1
    for p in range(patients):
        for _ in range(slices):
            image, mask = blob_slice(size, p % 3, rng)
            pixels = (np.clip(image, 0, 1500) / 1500 * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"{n}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{n}.png")
            rows.append({"id": n, "pid": f"F{p:03d}", "label": p % 3 + 1, "fold": p % 5})
            n += 1
    with (root / "meta.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "pid", "label", "fold"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def make_mix(root: Path) -> Path:
    """figshare/, lgg/ and brats/ side by side, as in the shared data folder."""
    from fixtures import brats_labels

    make_figshare_compact(root / "figshare")
    make_lgg_dataset(root / "lgg", patients=6, slices=8)
    labels = brats_labels((24, 24, 20))
    for i in range(5):
        write_brats_case(root / "brats" / f"Brats18_T_{i}_1", f"Brats18_T_{i}_1", labels=labels)
    return root


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The collection, with the BraTS slice export cached inside the test's folder."""
    root = tmp_path_factory.mktemp("mix")
    before = os.environ.get("TUMORSCOPE_CACHE")
    for env in (os.environ, ENV):
        env["TUMORSCOPE_CACHE"] = str(root / "cache")
    yield make_mix(root / "data")
    for env in (os.environ, ENV):
        if before is None:
            env.pop("TUMORSCOPE_CACHE", None)
        else:
            env["TUMORSCOPE_CACHE"] = before


def test_mix_index_classes_sources_and_patient_folds(mix: Path) -> None:
    from tumorscope.data import load_index
    from tumorscope.data.splits import patient_folds

    index = load_index("mri-mix", mix)
    assert index.classes == ["meningioma", "glioma", "pituitary", "no tumour"]
    by_source = {s: [r for r in index.records if r.source == s] for s in ("figshare", "lgg",
                                                                          "brats")}
    assert all(by_source.values())
    # every patient in exactly one fold, ids unique across datasets
    fold_of: dict[str, int | None] = {}
    for r in index.records:
        assert fold_of.setdefault(r.patient, r.fold) == r.fold
    assert len({r.id for r in index.records}) == len(index.records)
    # LGG folds are the LGG model's folds (5, seed 42); tumour slices are gliomas
    lgg = load_index("lgg", mix / "lgg")
    expected = patient_folds(lgg.records, 5, 42)
    assert all(r.fold == expected[r.patient] for r in by_source["lgg"])
    assert {r.label for r in by_source["lgg"]} == {1, 3}
    assert {r.channel for r in by_source["lgg"]} == {0, 1, 2}  # every sequence is seen
    # BraTS slices in three planes, tumour-free ones as "no tumour" with empty masks
    from tumorscope.data.slices import load_record

    planes = {r.id.split("_")[-3] for r in by_source["brats"]}
    assert planes == {"axial", "coronal", "sagittal"}
    for r in by_source["brats"]:
        _, mask = load_record(r)
        assert mask.any() == (r.label == 1), r.id


def test_sources_filter_and_unknown_source(mix: Path) -> None:
    from tumorscope.data import load_index
    from tumorscope.data.prepare import keep_sources
    from tumorscope.errors import ConfigError

    index = keep_sources(load_index("mri-mix", mix), ["figshare", "brats"])
    assert {r.source for r in index.records} == {"figshare", "brats"}
    with pytest.raises(ConfigError, match="lggg"):
        keep_sources(index, ["lggg"])


def test_a_pack_of_every_dataset_serves_a_run_on_some(mix: Path, tmp_path: Path) -> None:
    """Leave-one-dataset-out from one pack: the subset's split is the one the dataset gives."""
    from tumorscope.config import JointExperiment, load_config, require_task
    from tumorscope.data.pack import read_pack, write_pack
    from tumorscope.data.prepare import prepare_split
    from tumorscope.errors import ConfigError

    config = tmp_path / "mix.yaml"
    config.write_text(f"""name: mix
data: {{dataset: mri-mix, root: {mix}, test_fold: 0, val_fold: 1}}
model: {{arch: unet, encoder: resnet18, encoder_weights: none, input_size: 32}}
""")

    def cfg(*overrides: str) -> JointExperiment:
        return require_task(load_config(config, list(overrides)), JointExperiment)

    write_pack(cfg(), *prepare_split(cfg()), tmp_path / "pack")
    packed = f"data.pack={tmp_path / 'pack'}"
    some = "data.sources=[figshare,brats]"
    split = read_pack(cfg(packed, some)).split
    _, raw = prepare_split(cfg(some))
    for role in ("train", "val", "test"):
        assert [r.id for r in getattr(split, role)] == [r.id for r in getattr(raw, role)]
    assert {r.source for r in split.train} == {"figshare", "brats"}
    with pytest.raises(ConfigError, match="lggg"):
        read_pack(cfg(packed, "data.sources=[lggg]"))
    write_pack(cfg(some), *prepare_split(cfg(some)), tmp_path / "some")
    with pytest.raises(ConfigError, match="sources"):  # a subset's pack serves only that subset
        read_pack(cfg(f"data.pack={tmp_path / 'some'}"))


@pytest.fixture(scope="module")
def calibrated(mix: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with module_scratch(tmp_path_factory, "mix_run") as tmp:
        config = tmp / "mix.yaml"
        config.write_text(f"""name: mix
seed: 3
data: {{dataset: mri-mix, root: {mix}, test_fold: 0, val_fold: 1}}
model: {{arch: unet, encoder: resnet18, encoder_weights: none, attention: none, input_size: 64}}
augment: {{bias_field: 0.5, ghosting: 0.3, motion: 0.3, spike: 0.2, blur: 0.3, noise: 0.3,
          downscale: 0.3, jpeg: 0.5, gamma: 0.3}}
ema: {{enabled: false}}
output: {{root: {tmp / 'runs'}}}
trainer: {{epochs: 2, batch_size: 8, accelerator: cpu, checkpoint_every_n_steps: 5}}
""")
        res = cli("train", "--config", str(config), cwd=tmp)
        assert res.returncode == 0, res.stderr[-2000:]
        out = tmp / "calibrated"
        res = cli("calibrate", "--checkpoint", str(tmp / "runs" / "mix" / "model"), "--out",
                  str(out), cwd=tmp)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "temperature" in res.stdout and "no-tumour rule" in res.stdout
        yield out


def test_calibrate_within_a_false_alarm_budget(calibrated: Path, tmp_path: Path) -> None:
    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.calibrate import YOUDEN_RULE

    default = read_card(calibrated).calibration
    assert default is not None and default.tumour_rule == YOUDEN_RULE
    run_model = calibrated.parent / "runs" / "mix" / "model"
    res = cli("calibrate", "--checkpoint", str(run_model), "--out", str(tmp_path / "fa"),
              "--false-alarms", "0.05", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    cal = read_card(tmp_path / "fa").calibration
    assert cal is not None and "5.0% false alarms" in str(cal.tumour_rule)
    assert cal.detection_validation["false_alarm_rate"] <= 0.05
    assert "5.0% false alarms" in res.stdout
    bad = cli("calibrate", "--checkpoint", str(run_model), "--out", str(tmp_path / "bad"),
              "--false-alarms", "5", cwd=tmp_path)
    assert bad.returncode == 2 and "--false-alarms" in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and not (tmp_path / "bad").exists()


def test_calibration_is_fitted_on_validation_and_stored(calibrated: Path) -> None:
    from tumorscope.checkpoint.store import read_card
    from tumorscope.evaluation.calibrate import MASK_RESCUES, MASK_THRESHOLDS

    card = read_card(calibrated)
    cal = card.calibration
    assert cal is not None and card.model["ood_features"] is True
    assert cal.fitted_on.startswith("validation fold 1")
    assert 0.05 <= cal.temperature <= 20
    assert cal.no_tumour_class == "no tumour"
    assert cal.tumour_threshold is not None and 0 <= cal.tumour_threshold <= 1
    assert cal.ood_reference == sorted(cal.ood_reference) and len(cal.ood_reference) == 101
    assert cal.ood_threshold is not None and cal.ood_threshold <= cal.ood_reference[-1]
    # the distance: the last two encoder stages, each standardised on validation
    from tumorscope.checkpoint.store import load_checkpoint
    from tumorscope.evaluation.calibrate import OOD_STAGES

    assert card.model["ood_stages"] == list(OOD_STAGES) == [-2, -1]
    net, _ = load_checkpoint(calibrated)
    assert len(net.ood.stages) == 2 and bool((net.ood.scale > 0).all())
    assert abs(float(np.median(cal.ood_reference))) < 1.5  # a sum of two standardised scores
    # the mask rule, chosen on the validation slices with a tumour
    assert cal.mask_threshold in MASK_THRESHOLDS and cal.mask_rescue in MASK_RESCUES
    assert cal.mask_dice_validation["slices"] > 0
    assert (calibrated / "calibration.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_reports_trust_per_dataset(calibrated: Path, tmp_path: Path) -> None:
    res = cli("evaluate", "--checkpoint", str(calibrated), "--out", str(tmp_path / "ev"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    trust = metrics["trust"]
    assert set(trust["per_source"]) == {"figshare", "lgg", "brats"}
    assert 0 <= trust["ece_calibrated"] <= 1 and 0 <= trust["ece_uncalibrated"] <= 1
    det = trust["detection"]
    assert det["tumour_slices"] > 0 and det["tumour_free_slices"] > 0
    assert 0 <= det["auroc"] <= 1
    # each slice's detection score is kept: the AUROC is recomputed from the records
    from tumorscope.uncertainty import auroc

    rows = metrics["per_image"]
    scores = np.array([r["tumour_score"] for r in rows])
    assert np.isclose(auroc(scores, np.array([r["true"] != "no tumour" for r in rows])),
                      det["auroc"])
    res = cli("card", "--checkpoint", str(calibrated), "--metrics",
              str(tmp_path / "ev" / "metrics.json"), "--out", str(tmp_path / "card.md"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    card = (tmp_path / "card.md").read_text()
    assert "- Mask: pixels above" in card and "validation Dice over" in card
    # a leave-one-dataset-out style evaluation on one source only
    res = cli("evaluate", "--checkpoint", str(calibrated), "--out", str(tmp_path / "lgg"),
              "--sources", "lgg", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    only = json.loads((tmp_path / "lgg" / "metrics.json").read_text())
    assert {p["id"].split("/")[0] for p in only["per_image"]} == {"lgg"}


def _text_image() -> np.ndarray:
    from PIL import Image, ImageDraw

    page = Image.new("L", (128, 128), 255)
    draw = ImageDraw.Draw(page)
    for i in range(8):
        draw.text((4, 4 + 15 * i), f"Invoice line {i}: 42.00 EUR", fill=0)
    return np.asarray(page, dtype=np.float32)[None]


def _scan(array: np.ndarray) -> object:
    from tumorscope.io import Scan

    return Scan(array.astype(np.float32), None, Path("probe.png"), "png",
                tuple(f"c{i}" for i in range(array.shape[0])))


def test_unfamiliar_inputs_are_flagged(calibrated: Path, mix: Path) -> None:
    from tumorscope.inference.predictor import Predictor

    predictor = Predictor.from_checkpoint(calibrated, backend="torch")
    rng = np.random.default_rng(0)
    photo = np.stack([rng.uniform(150, 255, (96, 96)), rng.uniform(0, 80, (96, 96)),
                      np.tile(np.linspace(0, 255, 96), (96, 1))])
    for name, array in {"text": _text_image(), "photo": photo,
                        "noise": rng.uniform(0, 255, (1, 96, 96))}.items():
        pred = predictor.predict_scan(_scan(array))  # type: ignore[arg-type]
        assert pred.in_distribution is False, name
        assert "unlike the training data" in pred.message()
    # a training-like slice is judged by its features, with a typicality in [0, 1]
    image = next((mix / "figshare" / "images").glob("*.png"))
    pred = predictor.predict_file(image)
    assert 0 <= pred.extra["typicality"] <= 1
    assert pred.extra["tumour_probability"] is not None
    if not pred.tumour_found:  # "no tumour" clears the outline
        assert not pred.mask.any() and pred.label == "no tumour"


def test_onnx_carries_the_distance(calibrated: Path, tmp_path: Path) -> None:
    from tumorscope.inference.onnx_export import export_checkpoint_onnx
    from tumorscope.inference.predictor import Predictor

    path, diff = export_checkpoint_onnx(calibrated, tmp_path)  # checked against PyTorch
    assert path.is_file() and np.isfinite(diff)
    import shutil

    for f in calibrated.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    onnx = Predictor.from_checkpoint(tmp_path, backend="onnx")
    torch_p = Predictor.from_checkpoint(tmp_path, backend="torch")
    assert "ood_distance" in onnx.runner.outputs
    probe = _scan(_text_image())
    a = onnx.predict_scan(probe)  # type: ignore[arg-type]
    b = torch_p.predict_scan(probe)  # type: ignore[arg-type]
    assert a.in_distribution == b.in_distribution is False


def test_api_and_page_fields_say_unreliable(calibrated: Path, tmp_path: Path) -> None:
    import io

    from PIL import Image

    from conftest_server import start_server

    server, proc = start_server(tmp_path, "--checkpoint", str(calibrated))
    try:
        buf = io.BytesIO()
        Image.fromarray(_text_image()[0].astype(np.uint8)).save(buf, format="PNG")
        boundary = "tumorscopeboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"page.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + \
            buf.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            f"{server.url}/api/v1/predict", data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            data = json.loads(resp.read())
        assert data["in_distribution"] is False and data["ood_reasons"]
        assert "unreliable" in data["message"]
        assert isinstance(data["tumour_found"], bool)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_robustness_command_scores_every_corruption_and_probe(calibrated: Path,
                                                              tmp_path: Path) -> None:
    res = cli("robustness", "--checkpoint", str(calibrated), "--limit", "6", "--probes", "2",
              "--out", str(tmp_path / "rob"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (scores,) = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    from tumorscope.experiments.robustness import NAMES, PROBES

    assert set(scores["corruptions"]) == set(NAMES)
    assert all(0 <= c["accuracy"] <= 1 and 0 <= c["type_accuracy"] <= 1
               for c in scores["corruptions"].values())
    assert set(scores["probes"]) == set(PROBES)
    assert scores["probes"]["text page"] == 1.0 and scores["probes"]["colour photograph"] == 1.0
    table = (tmp_path / "rob" / "robustness.md").read_text()
    assert "| JPEG |" in table and "| wide canvas |" in table
    assert "acc / type / Dice / AUROC / flagged" in table


@pytest.mark.parametrize(("classes", "probs", "decided", "kind"), [
    (["meningioma", "glioma", "pituitary", "no tumour"], [0.05, 0.15, 0.1, 0.7],
     ("no tumour", False), 1),  # not found, yet asked "which one", glioma
    (["meningioma", "glioma", "pituitary", "no tumour"], [0.1, 0.2, 0.6, 0.1],
     ("pituitary", True), 2),
    (["meningioma", "glioma", "pituitary"], [0.5, 0.3, 0.2], ("meningioma", None), 0),
])
def test_the_tumour_type_is_read_apart_from_the_decision(
        classes: list[str], probs: list[float], decided: tuple[str, bool | None],
        kind: int) -> None:
    from tumorscope.checkpoint.card import Calibration, ModelCard
    from tumorscope.inference.joint import JointInferer

    none = "no tumour" if "no tumour" in classes else None
    card = ModelCard(task="joint", classes=classes, model={},
                     preprocessing={"input_size": 8, "in_channels": 1},
                     calibration=Calibration(fitted_on="validation", no_tumour_class=none,
                                             tumour_threshold=0.5))
    inferer = JointInferer(runner=None, card=card)  # type: ignore[arg-type]  # not run
    assert inferer.decide(np.array(probs)) == decided
    assert inferer.tumour_type(np.array(probs)) == kind


def test_robustness_scores_the_named_corruptions_only(calibrated: Path, tmp_path: Path) -> None:
    res = cli("robustness", "--checkpoint", str(calibrated), "--limit", "4", "--probes", "1",
              "--corruption", "skull stripped", "--corruption", "none",
              "--out", str(tmp_path / "rob"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (scores,) = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert set(scores["corruptions"]) == {"none", "skull stripped"}
    table = (tmp_path / "rob" / "robustness.md").read_text()
    assert "| skull stripped |" in table and "| JPEG |" not in table
    bad = cli("robustness", "--checkpoint", str(calibrated), "--corruption", "sunburn",
              "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert bad.returncode == 2 and "sunburn" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


def test_an_unknown_dataset_on_the_command_line_is_blamed_on_the_flag(calibrated: Path,
                                                                      tmp_path: Path) -> None:
    for command in ("robustness", "evaluate"):
        bad = cli(command, "--checkpoint", str(calibrated), "--sources", "lggg",
                  "--out", str(tmp_path / command), cwd=tmp_path)
        assert bad.returncode == 2, (command, bad.stderr[-2000:])
        (line,) = bad.stderr.strip().splitlines()
        assert f"tumorscope {command}: error: --sources: ['lggg'] not in this dataset" in line
        assert not (tmp_path / command).exists()


def test_corruptions_change_the_image_and_are_seeded() -> None:
    from tumorscope.experiments.robustness import CORRUPTIONS, corrupt

    rng = np.random.default_rng(0)
    image, mask = blob_slice(64, 1, rng)
    clean, clean_mask = corrupt(image[None].astype(np.float32), "none", 0, mask)
    for name in CORRUPTIONS:
        if name == "none":
            continue
        a, a_mask = corrupt(image[None].astype(np.float32), name, 3, mask)
        assert a.shape == clean.shape and a.min() >= 0 and a.max() <= 1
        assert np.abs(a - clean).mean() > 1e-3, name
        assert np.array_equal(a, corrupt(image[None].astype(np.float32), name, 3, mask)[0]), name
        assert np.array_equal(a_mask, clean_mask), name  # the tumour stays where it was


@pytest.mark.parametrize(("name", "shape"), [
    ("cropped to the head", None), ("wide canvas", (64, 114)), ("landscape crop", (48, 64)),
    ("zoomed out", (96, 96))])
def test_reframes_move_the_mask_with_the_pixels(name: str, shape: tuple[int, int] | None
                                                ) -> None:
    from tumorscope.experiments.robustness import corrupt

    rng = np.random.default_rng(1)
    image, mask = blob_slice(64, 1, rng)
    image[:, :6] = image[:, -6:] = 0  # dark margins left and right, as around a head
    pixels, moved = corrupt(image[None].astype(np.float32), name, 0, mask)
    assert pixels.shape[1:] == moved.shape
    if shape is not None:
        assert moved.shape == shape
    else:  # the dark margins are cut away
        assert moved.shape[1] < 64
    # the whole tumour, and the same pixels under it, wherever the frame put it
    scaled = (image - image.min()) / (image.max() - image.min())
    assert moved.sum() == mask.sum() > 0
    assert np.allclose(np.sort(pixels[0][moved.astype(bool)]),
                       np.sort(scaled[mask.astype(bool)]), atol=1e-6)


# -- one mask per outline definition (model.outlines) ---------------------------------------

def test_each_slice_learns_its_own_outline() -> None:
    import torch

    from tumorscope.models.joint import own_outline

    logits = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    picked = own_outline(logits, torch.tensor([2, 0]))
    assert picked.shape == (2, 1, 2, 2)
    assert torch.equal(picked[0, 0], logits[0, 2]) and torch.equal(picked[1, 0], logits[1, 0])
    one = logits[:, :1]
    assert own_outline(one, torch.tensor([0, 0])) is one and own_outline(one, None) is one
    with pytest.raises(ValueError, match="outline index"):
        own_outline(logits, None)


def test_outline_of_each_record_and_unknown_dataset() -> None:
    from tumorscope.data.records import Record
    from tumorscope.data.slices import outline_indices
    from tumorscope.errors import ConfigError

    records = [Record(f"{s}/1", Path("x.png"), None, 0, "p", source=s)
               for s in ("lgg", "figshare", "brats")]
    assert outline_indices(records, ["figshare", "lgg", "brats"]) == [1, 0, 2]
    assert outline_indices(records, None) == [0, 0, 0]
    with pytest.raises(ConfigError, match="brats"):
        outline_indices(records, ["figshare", "lgg"])


def test_outlines_config_needs_distinct_datasets() -> None:
    from pydantic import ValidationError

    from tumorscope.config import JointModelConfig

    assert JointModelConfig(outlines=["figshare", "lgg"]).outlines == ["figshare", "lgg"]
    for bad in (["figshare"], ["lgg", "lgg"]):
        with pytest.raises(ValidationError, match="distinct"):
            JointModelConfig(outlines=bad)


def test_one_mask_warm_starts_every_outline(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from tumorscope.models import build_joint
    from tumorscope.models.pretrained import load_matching

    torch.manual_seed(0)
    one = build_joint("unet", "resnet18", 4, attention="none")
    weights = tmp_path / "one.safetensors"
    save_file({k: v.contiguous() for k, v in one.state_dict().items()}, weights)
    three = build_joint("unet", "resnet18", 4, attention="none", mask_channels=3)
    loaded, fresh = load_matching(three, weights)
    assert fresh == [] and loaded == len(three.state_dict())
    x = torch.rand(2, 1, 64, 64)
    one.eval()
    three.eval()
    with torch.no_grad():
        (m1, c1), (m3, c3) = one(x), three(x)
    assert m3.shape == (2, 3, 64, 64)
    for k in range(3):  # every outline starts as the one mask it came from
        assert torch.allclose(m3[:, k], m1[:, 0], atol=1e-5)
    assert torch.allclose(c1, c3, atol=1e-5)


@pytest.fixture(scope="module")
def outlined(mix: Path, calibrated: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A model with one mask per dataset, its decoder refined from the calibrated one-mask
    model with the encoder and classification head frozen; (trained model, calibrated)."""
    with module_scratch(tmp_path_factory, "outlines_run") as tmp:
        config = tmp / "outlines.yaml"
        config.write_text(f"""name: outlines
seed: 4
init_weights: {calibrated}
data: {{dataset: mri-mix, root: {mix}, test_fold: 0, val_fold: 1}}
model: {{arch: unet, encoder: resnet18, encoder_weights: none, attention: none, input_size: 64,
        outlines: [figshare, lgg, brats]}}
optim: {{lr: 0.01, train_only: [decoder, segmentation_head]}}
ema: {{enabled: false}}
output: {{root: {tmp / 'runs'}}}
trainer: {{epochs: 1, batch_size: 8, accelerator: cpu}}
""")
        res = cli("train", "--config", str(config), cwd=tmp)
        assert res.returncode == 0, res.stderr[-2000:]
        model = tmp / "runs" / "outlines" / "model"
        res = cli("calibrate", "--checkpoint", str(model), "--out", str(tmp / "cal"), cwd=tmp)
        assert res.returncode == 0, res.stderr[-2000:]
        yield model, tmp / "cal"


@pytest.fixture(scope="module")
def muted(outlined: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The calibrated outline model with its outputs told apart beyond doubt: the figshare
    outline never fires, the LGG one covers every pixel, BraTS's is as trained."""
    import torch

    from tumorscope.checkpoint.store import load_checkpoint, save_checkpoint

    model, card = load_checkpoint(outlined[1])
    state = model.state_dict()
    state["segmentation_head.0.bias"][:2] = torch.tensor([-50.0, 50.0])
    out = tmp_path_factory.mktemp("muted")
    save_checkpoint(out, state, card)
    return out


def test_frozen_modules_stay_as_loaded(outlined: tuple[Path, Path], calibrated: Path) -> None:
    from tumorscope.models.pretrained import read_state_dict

    before = read_state_dict(calibrated / "model.safetensors")
    after = read_state_dict(outlined[0] / "model.safetensors")
    frozen = [k for k in after if k.startswith(("encoder.", "classification_head."))]
    assert any("running_mean" in k for k in frozen)  # BatchNorm statistics included
    for k in frozen:
        assert after[k].float().equal(before[k].float()), k
    assert after["segmentation_head.0.weight"].shape[0] == 3
    trained = [k for k in after if k.startswith("decoder.") and k in before
               and not after[k].float().equal(before[k].float())]
    assert trained  # the decoder did learn


def test_outlines_are_drawn_by_name(outlined: tuple[Path, Path], calibrated: Path, muted: Path,
                                    mix: Path, tmp_path: Path) -> None:
    from tumorscope.inference.joint import JointInferer, sigmoid
    from tumorscope.inference.predictor import Predictor
    from tumorscope.io import read_scan

    _, cal = outlined
    predictor = Predictor.from_checkpoint(cal, backend="torch")
    inferer = predictor.inferer
    assert isinstance(inferer, JointInferer)
    assert inferer.outlines == ["figshare", "lgg", "brats"] and inferer.outline == "figshare"
    assert inferer.outlines_of(["lgg", None, "brats"]) == ["lgg", None, "brats"]
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    picked = inferer._mask({"mask_logits": logits}, np.array([1, 2]))
    assert np.allclose(picked[:, 0], sigmoid(logits[[0, 1], [1, 2]]))
    # the same classification as the model it was refined from; its mask follows --outline
    image = next((mix / "figshare" / "images").glob("*.png"))
    source = Predictor.from_checkpoint(calibrated, backend="torch").predict_file(image)
    pred = predictor.predict_file(image)
    assert pred.extra["outline"] == "figshare"
    for c, p in source.probabilities.items():
        assert pred.probabilities[c] == pytest.approx(p, abs=1e-5)
    res = cli("predict", str(image), "--checkpoint", str(cal), "--outline", "brats", "--out",
              str(tmp_path / "p"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.loads(next((tmp_path / "p").glob("*.json")).read_text())
    assert record["outline"] == "brats"
    direct = Predictor.from_checkpoint(cal, backend="torch", outline="brats")
    scan = read_scan(image)
    assert np.array_equal(direct.predict_scan(scan).mask,
                          np.asarray(read_scan(next((tmp_path / "p").glob("*mask*.png"))).array[0]
                                     > 0))
    # each name draws its own output: never, everywhere, or as trained
    loud = Predictor.from_checkpoint(muted, backend="torch").inferer
    assert isinstance(loud, JointInferer)
    array = scan.array
    none, every, trained = (out.mask for out in loud.predict_batch(
        [array] * 3, sources=[image] * 3, outlines=["figshare", "lgg", "brats"]))
    assert not none.any() and every.all()
    assert np.array_equal(trained, inferer.predict_batch(
        [array], sources=[image], outlines=["brats"])[0].mask)
    for model, outline, why in ((cal, "nope", "its outlines are"),
                                (calibrated, "lgg", "has one outline")):
        res = cli("predict", str(image), "--checkpoint", str(model), "--outline", outline,
                  "--out", str(tmp_path / "bad"), cwd=tmp_path)
        assert res.returncode == 2 and why in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_evaluation_scores_each_dataset_on_its_own_outline(muted: Path, tmp_path: Path) -> None:
    from tumorscope.checkpoint.store import read_card
    from tumorscope.data.prepare import prepare_split
    from tumorscope.data.slices import load_record

    res = cli("evaluate", "--checkpoint", str(muted), "--out", str(tmp_path / "ev"),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((tmp_path / "ev" / "metrics.json").read_text())["per_image"]
    found = {r["id"]: r for r in rows if r["has_tumour"] and r["predicted"] != "no tumour"}
    _, split = prepare_split(read_card(muted).experiment("card"), None)
    by_source = {s: [r for r in split.test if r.id in found and r.source == s]
                 for s in ("figshare", "lgg")}
    assert by_source["figshare"] and by_source["lgg"]
    # figshare slices are scored on the figshare outline, which never fires ...
    assert all(found[r.id]["dice"] == 0 for r in by_source["figshare"])
    # ... LGG slices on the LGG outline, which covers the whole slice
    for record in by_source["lgg"]:
        truth = load_record(record)[1]
        expected = 2 * truth.sum() / (truth.sum() + truth.size)
        assert found[record.id]["dice"] == pytest.approx(expected, rel=1e-6), record.id


def test_onnx_export_carries_every_outline(outlined: tuple[Path, Path], mix: Path,
                                           tmp_path: Path) -> None:
    import shutil

    from tumorscope.inference.onnx_export import export_checkpoint_onnx
    from tumorscope.inference.predictor import Predictor

    _, cal = outlined
    for f in cal.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    export_checkpoint_onnx(tmp_path, tmp_path)  # checked against PyTorch
    image = next((mix / "figshare" / "images").glob("*.png"))
    for outline in ("figshare", "lgg", "brats"):
        onnx = Predictor.from_checkpoint(tmp_path, backend="onnx", outline=outline)
        torch_p = Predictor.from_checkpoint(tmp_path, backend="torch", outline=outline)
        a, b = onnx.predict_file(image), torch_p.predict_file(image)
        assert a.extra["outline"] == b.extra["outline"] == outline
        assert (a.mask != b.mask).mean() < 0.01  # float rounding may flip an edge pixel


# -- the dataset adversary (loss.source_adversary) ------------------------------------------

def test_a_run_with_the_dataset_adversary_trains_logs_and_exports_without_it(
        mix: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tumorscope.models import build_joint

    def config(name: str, model: str, sources: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"""name: {name}
data: {{dataset: mri-mix, root: {mix}, test_fold: 0, val_fold: 1}}
model: {{{model}, encoder_weights: none, attention: none, input_size: 32}}
loss: {{source_adversary: {{weight: 0.5, sources: {sources}}}}}
ema: {{enabled: false}}
output: {{root: {tmp_path / 'runs'}}}
trainer: {{epochs: 1, batch_size: 8, accelerator: cpu, log_every_n_steps: 1}}
""")
        return path

    res = cli("train", "--config", str(config("adv", "arch: unet, encoder: resnet18",
                                              "[brats, lgg, figshare]")), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(next((tmp_path / "runs" / "adv").rglob("metrics.csv")).open()))
    guesses = [float(r["train/source_acc"]) for r in rows if r.get("train/source_acc")]
    assert guesses and all(0.0 <= g <= 1.0 for g in guesses)
    exported = load_file(tmp_path / "runs" / "adv" / "model" / "model.safetensors")
    assert set(exported) == set(build_joint("unet", "resnet18", 4, attention="none").state_dict())
    for model, sources, blamed in (("arch: unet, encoder: resnet18", "[brats, figshare]",
                                    "loss.source_adversary.sources: slices of ['lgg']"),
                                   ("arch: plain-unet", "[brats, lgg, figshare]",
                                    "loss.source_adversary: needs an smp encoder")):
        res = cli("train", "--config", str(config("bad", model, sources)), cwd=tmp_path)
        assert res.returncode == 2 and blamed in res.stderr, res.stderr[-2000:]
        assert "Traceback" not in res.stderr


# -- the tumour type from some datasets only (loss.type_sources) -----------------------------

def test_a_run_with_the_type_from_figshare_only_trains_and_a_typo_is_one_line(
        mix: Path, tmp_path: Path) -> None:
    config = tmp_path / "typed.yaml"
    config.write_text(f"""name: typed
data: {{dataset: mri-mix, root: {mix}, test_fold: 0, val_fold: 1}}
model: {{arch: unet, encoder: resnet18, encoder_weights: none, attention: none, input_size: 32}}
ema: {{enabled: false}}
output: {{root: {tmp_path / 'runs'}}}
trainer: {{epochs: 1, batch_size: 8, accelerator: cpu, log_every_n_steps: 1}}
""")
    res = cli("train", "--config", str(config), "loss.type_sources=[figshare]", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(next((tmp_path / "runs" / "typed").rglob("metrics.csv")).open()))
    assert any(r.get("train/cls_loss") for r in rows)
    assert (tmp_path / "runs" / "typed" / "model" / "model.safetensors").is_file()
    res = cli("train", "--config", str(config), "loss.type_sources=[figshar]",
              "output.run_name=typo", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "loss.type_sources: ['figshar'] are not datasets of these slices" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs" / "typo" / "model").exists()
