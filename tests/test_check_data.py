"""``tumorscope check-data``: planted copies in real-format fixtures (figshare ``images/ masks/
meta.csv``, LGG ``kaggle_3m``) are found and classified, distinct images are not, and bad
input is one line with exit status 2 and no output folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from tumorscope.cli import main
from tumorscope.data import load_index
from tumorscope.data.audit import Item, audit, find_pairs, fingerprint, mirror, similar_pairs
from tumorscope.data.records import Record

SIZE = 64
# patient -> (fold, label 1..3) of the figshare fixture: P0/P1 and P2/P3 share a label
# across folds, P6 shares P0's fold and label
PATIENTS = {"P0": (0, 1), "P1": (1, 1), "P2": (2, 2), "P3": (0, 2), "P4": (1, 3),
            "P5": (2, 3), "P6": (0, 1)}


def texture(rng: np.random.Generator) -> np.ndarray:
    """A distinct 8-bit image: smooth random structure, unlike any other draw."""
    field = cv2.resize(rng.normal(size=(12, 12)).astype(np.float32), (SIZE, SIZE),
                       interpolation=cv2.INTER_CUBIC)
    field += rng.normal(0, 0.15, field.shape).astype(np.float32)
    return np.clip((field - field.min()) / np.ptp(field) * 255, 0, 255).astype(np.uint8)


def jpeg(path: Path, pixels: np.ndarray, quality: int = 95) -> None:
    Image.fromarray(pixels).save(path, format="JPEG", quality=quality)


def decoded(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def make_figshare(root: Path, rng: np.random.Generator) -> Path:
    """Three slices per patient, distinct, except the planted copies (ids in comments)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,pid,label,label_name,fold,original_size,tumor_border"]
    names = {1: "meningioma", 2: "glioma", 3: "pituitary"}
    n = 0
    for pid, (fold, label) in PATIENTS.items():
        for _ in range(3):
            n += 1
            jpeg(root / "images" / f"{n}.jpg", texture(rng))
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[20:30, 20:30] = 255
            Image.fromarray(mask).save(root / "masks" / f"{n}.png")
            rows.append(f"{n},{pid},{label},{names[label]},{fold},{SIZE},[]")
    img = root / "images"
    # P0 = ids 1-3, P1 = 4-6, P2 = 7-9, P3 = 10-12, P4 = 13-15, P5 = 16-18, P6 = 19-21
    (img / "4.jpg").write_bytes((img / "1.jpg").read_bytes())  # exact copy, across folds
    jpeg(img / "10.jpg", decoded(img / "7.jpg")[:, ::-1].copy(), 90)  # mirrored, across folds
    jpeg(img / "13.jpg", decoded(img / "8.jpg"), 70)  # relabelled (glioma -> pituitary)
    (img / "19.jpg").unlink()  # same pixels as 2.jpg, other bytes (PNG), same fold
    Image.fromarray(decoded(img / "2.jpg")).save(img / "19.png")
    near = decoded(img / "16.jpg").astype(float) + rng.normal(0, 2, (SIZE, SIZE))
    jpeg(img / "17.jpg", np.clip(near, 0, 255).astype(np.uint8))  # neighbouring slice
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def make_lgg(root: Path, rng: np.random.Generator, copy_of: Path) -> Path:
    """Five cases of two slices (3-channel TIFF + mask); case 0 slice 1 shows ``copy_of``."""
    cases = root / "kaggle_3m"
    for p in range(5):
        case = f"TCGA_XX_{1000 + p}_20000101"
        (cases / case).mkdir(parents=True)
        for n in (1, 2):
            gray = decoded(copy_of) if (p, n) == (0, 1) else texture(rng)
            tifffile.imwrite(cases / case / f"{case}_{n}.tif", np.stack([gray] * 3, -1),
                             photometric="rgb")
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[10:20, 10:20] = 255 * (n == 2)
            tifffile.imwrite(cases / case / f"{case}_{n}_mask.tif", mask, compression="zlib")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    base = tmp_path_factory.mktemp("audit")
    figshare = make_figshare(base / "figshare", rng)
    return figshare, make_lgg(base / "lgg", rng, figshare / "images" / "5.jpg")


EXPECTED = {  # (id_a, id_b): (kind, exact, mirrored)
    ("1", "4"): ("cross-fold", "bytes", False),
    ("7", "10"): ("cross-fold", "", True),
    ("8", "13"): ("label-conflict", "", False),
    ("2", "19"): ("same-fold", "pixels", False),
    ("16", "17"): ("same-patient", "", False),
    ("5", "TCGA_XX_1000_20000101_1"): ("cross-dataset", "", False),
}


def test_planted_copies_are_found_and_nothing_else(data: tuple[Path, Path]) -> None:
    figshare, lgg = data
    result = audit([load_index("figshare", figshare), load_index("lgg", lgg)])
    found = {}
    for p in result.pairs:
        a, b = result.items[p.a], result.items[p.b]
        found[(a.record.id, b.record.id)] = (p.kind, p.exact, p.mirrored)
        assert p.correlation >= 0.95
    assert found == EXPECTED  # distinct images (every other pair) are not flagged
    conflict = next(p for p in result.pairs if p.kind == "label-conflict")
    assert (result.items[conflict.a].label, result.items[conflict.b].label) == \
        ("glioma", "pituitary")
    assert conflict.relation == "cross-fold"
    assert {i.fold for i in result.items if i.dataset == "lgg"} == set(range(5))
    assert all(p.relation != "same-patient" for p in result.below)


def test_exact_copies_are_found_whatever_the_threshold(data: tuple[Path, Path]) -> None:
    result = audit([load_index("figshare", data[0])], threshold=1.0)
    exact = {(result.items[p.a].record.id, result.items[p.b].record.id): p.exact
             for p in result.pairs}
    assert exact == {("1", "4"): "bytes", ("2", "19"): "pixels"}


def test_blocked_comparison_matches_all_pairs_and_mirrors() -> None:
    rng = np.random.default_rng(0)
    images = [texture(rng) for _ in range(9)]
    images += [images[0][:, ::-1].copy(), images[3]]
    prints = np.stack([fingerprint(im[None]) for im in images])
    full = np.maximum(prints @ prints.T, prints @ mirror(prints).T)
    expected = {(i, j) for i, j in zip(*np.nonzero(full >= 0.95), strict=True) if i < j}
    got = {(i, j): m for i, j, _, m in similar_pairs(prints, 0.95, block=4)}
    assert set(got) == expected == {(0, 9), (3, 10)}
    assert got[(0, 9)] and not got[(3, 10)]
    assert fingerprint(np.full((1, 8, 8), 7)) is None  # no contrast: never compared


def test_cli_writes_the_report(data: tuple[Path, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    figshare, lgg = data
    out = tmp_path / "audit"
    assert main(["check-data", "--data", f"figshare={figshare}", "--data", f"lgg={lgg}",
                 "--out", str(out), "--threshold", "0.95"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["examples.png", "pairs.csv", "report.md",
                                                     "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]  # no partial folder left
    with (out / "pairs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["id_a"], r["id_b"]) for r in rows} == set(EXPECTED)
    assert rows[0]["kind"] == "label-conflict"  # the most serious first
    row = next(r for r in rows if r["id_a"] == "7")
    assert (row["mirrored"], row["fold_a"], row["fold_b"], row["label_a"]) == \
        ("True", "2", "0", "glioma")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["by_kind"] == {"label-conflict": 1, "cross-dataset": 1, "cross-fold": 2,
                                  "same-fold": 1, "same-patient": 1}
    assert summary["exact_bytes"]["cross-fold"] == 1
    assert summary["datasets"]["figshare"]["folds"] == "shipped"
    assert summary["datasets"]["lgg"]["folds"] == "computed (5 folds, seed 42)"
    assert summary["datasets"]["figshare"]["distinct_pixels"] == 19  # 21 files, 2 copies
    report = (out / "report.md").read_text()
    assert "| label-conflict | 1 |" in report and "figshare/lgg" in report
    assert (out / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 near-duplicate pairs" in capsys.readouterr().out
    # a second run into the same folder replaces the files
    assert main(["check-data", "--data", f"figshare={figshare}", "--out", str(out),
                 "--limit", "6"]) == 0
    assert json.loads((out / "summary.json").read_text())["images"] == 6


def test_same_outline_is_not_a_duplicate_but_a_reencoded_copy_is() -> None:
    # different slices share the head's outline: without removing the smooth part, the
    # 32x32 correlation of any two of these is above 0.98
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    oval = ((((yy - 64) / 56) ** 2 + ((xx - 64) / 46) ** 2) < 1).astype(np.float32)
    head = cv2.GaussianBlur(oval, (0, 0), 3)
    brains = [np.clip(head * (100 + 0.4 * cv2.resize(texture(rng), (128, 128))), 0, 255)
              .astype(np.uint8) for _ in range(4)]
    plain = np.stack([cv2.resize(b.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
                      .ravel() for b in brains])
    assert np.corrcoef(plain).min() > 0.98
    prints = np.stack([fingerprint(b[None]) for b in brains])
    assert (prints @ prints.T)[np.triu_indices(4, 1)].max() < 0.92
    _, buf = cv2.imencode(".jpg", brains[0], [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert fingerprint(cv2.imdecode(buf, 0)[None]) @ prints[0] > 0.98


def test_identical_pixels_pair_up_from_their_hashes() -> None:
    items = [Item("d", Record(str(i), Path(f"{i}.png"), None, 0, f"p{i}"), i, "a")
             for i in range(3)]
    prints = np.eye(3, 32 * 32, dtype=np.float32)  # uncorrelated fingerprints
    pairs, _ = find_pairs(items, prints, ["f0", "f1", "f2"], ["h", "x", "h"], {"d": ["a"]})
    assert [(p.a, p.b, p.exact, p.kind) for p in pairs] == [(0, 2, "pixels", "cross-fold")]


@pytest.fixture
def corrupt(data: tuple[Path, Path], tmp_path: Path) -> Path:
    import shutil

    root = shutil.copytree(data[0], tmp_path / "corrupt")
    (root / "images" / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


@pytest.mark.parametrize(("flag", "message"), [
    ("figshare", "is not NAME=ROOT"),
    ("nope={fig}", "unknown dataset 'nope'"),
    ("figshare={tmp}/missing", "missing: dataset folder not found"),
    ("lgg={fig}", "no <case>_<n>.tif slices found"),
    ("figshare={corrupt}", "3.jpg"),
    ("figshare={fig} --threshold 1.5", "--threshold: 1.5 is not in (0, 1]"),
    ("figshare={fig} --data figshare={fig}", "given twice"),
])
def test_bad_input_is_one_line_and_no_output(flag: str, message: str, data: tuple[Path, Path],
                                             corrupt: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "audit"
    args = flag.format(fig=data[0], tmp=tmp_path, corrupt=corrupt).split(" ")
    assert main(["check-data", "--data", *args, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tumorscope check-data: error: ") and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "out").exists()
