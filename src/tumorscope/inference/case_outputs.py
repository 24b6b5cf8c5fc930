"""``tumorscope predict`` for BraTS models: each case folder (or four files named by
modality) -> ``<case>_seg.nii.gz`` in the input's space and label convention, a JSON record
with WT/TC/ET volumes in cm³, orthogonal views and a GIF. Every case is read and predicted
before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from tumorscope.inference.brats import BratsInferer, CasePrediction
from tumorscope.inference.outputs import prepare_output_folder
from tumorscope.inference.predictor import Predictor
from tumorscope.io.brats import BratsCase, read_case, write_segmentation
from tumorscope.io.writers import write_json
from tumorscope.reporting.regions import write_axial_gif, write_orthogonal_png

DISPLAY_MODALITY = "flair"


def read_cases(predictor: Predictor, sources: list[Path | dict[str, Path]]) -> list[BratsCase]:
    """Read every case with the model card's fallback and label settings."""
    section = predictor.card.preprocessing
    return [read_case(s, missing=str(section.get("missing_modality", "error")),
                      label_map=section.get("label_map")) for s in sources]


def predict_cases(predictor: Predictor, sources: list[Path | dict[str, Path]],
                  out: Path) -> list[dict[str, Any]]:
    """Predict and write every case; returns the JSON records."""
    inferer = cast(BratsInferer, predictor.inferer)
    cases = read_cases(predictor, sources)
    predictions: list[tuple[BratsCase, CasePrediction]] = [
        (case, inferer.predict_case(case)) for case in cases]
    prepare_output_folder(out)
    records = []
    for case, pred in predictions:
        stem = case.case_id
        display = case.image[case.modalities.index(DISPLAY_MODALITY)]
        files = {"segmentation": write_segmentation(pred.labels, case,
                                                    out / f"{stem}_seg.nii.gz").name,
                 "views": write_orthogonal_png(out / f"{stem}_views.png", display,
                                               pred.labels).name,
                 "gif": write_axial_gif(out / f"{stem}.gif", display, pred.labels).name}
        record = {**pred.record(), "naming": case.naming.name, "filled": list(case.filled),
                  "inputs": {k: str(v) for k, v in case.files.items()}, "outputs": files}
        write_json(out / f"{stem}.json", record)
        records.append(record)
    return records
