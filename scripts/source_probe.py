"""How well a fresh linear probe tells the datasets apart from a model's features, within one
class: did the dataset adversary (``loss.source_adversary``) make them alike?

    python scripts/source_probe.py models-lodo/lodo-nolgg-base models-lodo/lodo-nolgg-adv-s42

For each calibrated model, a class-balanced logistic regression learns the dataset of its
training-fold slices of ``--label`` (default glioma; at most 1,500, evenly spread) from their
pooled deepest encoder features, and is scored on the validation fold's (other patients):
balanced accuracy, 0.5 is chance. Experiment code for docs/trust.md; it writes nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tumorscope.checkpoint.store import load_checkpoint
from tumorscope.data.prepare import prepare_split, spread
from tumorscope.evaluation.calibrate import run_network
from tumorscope.models.joint import JointWithDistance
from tumorscope.transforms.slice2d import SlicePreprocessing


def probe(model_dir: str, label: str) -> tuple[float, dict[str, int]]:
    """Balanced accuracy of the dataset probe and the slice count per dataset."""
    model, card = load_checkpoint(model_dir)
    if not isinstance(model, JointWithDistance):
        raise SystemExit(f"{model_dir}: a calibrated joint model is needed")
    model.eval()
    _, split = prepare_split(card.experiment(f"{model_dir} (model card)"))
    pre = SlicePreprocessing.from_card(card.preprocessing)
    sets: list[tuple[np.ndarray, np.ndarray]] = []
    for role, records, most in (("training", split.train, 1500),
                                ("validation", split.val, len(split.val))):
        mine = spread([r for r in records if card.classes[r.label] == label], most)
        features = run_network(model, pre, mine, f"{role} {label} slices").features[-1]
        sets.append((features, np.array([str(r.outline) for r in mine])))
    (x_train, y_train), (x_val, y_val) = sets
    if len(set(y_train)) < 2 or len(set(y_val)) < 2:
        raise SystemExit(f"{model_dir}: {label} slices of one dataset only")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(
        C=0.1, class_weight="balanced", max_iter=2000))
    classifier.fit(x_train, y_train)
    accuracy = balanced_accuracy_score(y_val, classifier.predict(x_val))
    return float(accuracy), {str(s): int((y_val == s).sum()) for s in sorted(set(y_val))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--label", default="glioma")
    args = parser.parse_args()
    for model_dir in args.models:
        accuracy, counts = probe(model_dir, args.label)
        print(f"{model_dir}: balanced accuracy {accuracy:.3f} ({counts})")


if __name__ == "__main__":
    main()
