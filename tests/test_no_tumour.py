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
    from tumorscope.experiments.robustness import CORRUPTIONS, PROBES

    assert set(scores["corruptions"]) == set(CORRUPTIONS)
    assert all(0 <= c["accuracy"] <= 1 for c in scores["corruptions"].values())
    assert set(scores["probes"]) == set(PROBES)
    assert scores["probes"]["text page"] == 1.0 and scores["probes"]["colour photograph"] == 1.0
    assert "| JPEG |" in (tmp_path / "rob" / "robustness.md").read_text()


def test_corruptions_change_the_image_and_are_seeded() -> None:
    from tumorscope.experiments.robustness import CORRUPTIONS, corrupt

    rng = np.random.default_rng(0)
    image, _ = blob_slice(64, 1, rng)
    clean = corrupt(image[None].astype(np.float32), "none", 0)
    for name in CORRUPTIONS:
        if name == "none":
            continue
        a = corrupt(image[None].astype(np.float32), name, 3)
        assert a.shape == clean.shape and a.min() >= 0 and a.max() <= 1
        assert np.abs(a - clean).mean() > 1e-3, name
        assert np.array_equal(a, corrupt(image[None].astype(np.float32), name, 3)), name
