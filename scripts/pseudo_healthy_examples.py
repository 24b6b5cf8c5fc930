"""Figure and counts of the pseudo-healthy figshare slices (``mri-mix-mirror``).

    python scripts/pseudo_healthy_examples.py --data ../shared/data --out docs/trust

Writes ``pseudo-healthy.png`` (slices of the training folds before and after mirroring, the
axis in yellow) and prints how many slices qualify, per class and fold.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tumorscope.data import load_index
from tumorscope.data.slices import load_record
from tumorscope.transforms.pseudo_healthy import mirror_healthy, plan_mirror


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--examples", type=int, default=8)
    args = parser.parse_args()
    index = load_index("mri-mix-mirror", args.data)
    figshare = {r.id: r for r in index.records if r.source == "figshare"}
    mirrored = [r for r in index.records if r.source == "figshare-mirror"]
    names = ["meningioma", "glioma", "pituitary"]
    by_class = Counter(names[figshare[r.id.replace("figshare-mirror/", "figshare/")].label]
                       for r in mirrored)
    print(f"{len(mirrored)} of {len(figshare)} figshare slices qualify; by class "
          f"{dict(by_class)}; by fold {dict(sorted(Counter(r.fold for r in mirrored).items()))}")
    train = [r for r in mirrored if r.fold not in (0, 1)]
    picks = [train[int(i * len(train) / args.examples)] for i in range(args.examples)]
    fig, axes = plt.subplots(2, args.examples, figsize=(2.2 * args.examples, 4.6))
    for column, record in enumerate(picks):
        source = figshare[record.id.replace("figshare-mirror/", "figshare/")]
        pixels, mask = load_record(source)
        plan = plan_mirror(pixels, mask)
        for row, image in enumerate((pixels[0], mirror_healthy(pixels, mask, plan)[0])):
            ax = axes[row, column]
            ax.imshow(image, cmap="gray")
            ax.axis("off")
            if row == 0:
                ax.contour(mask, levels=[0.5], colors="red", linewidths=0.6)
                ax.axvline(plan.axis, color="yellow", linewidth=0.5)
                ax.set_title(f"{names[source.label]}\nsymmetry {plan.symmetry:.2f}", fontsize=8)
    axes[0, 0].text(-0.1, 0.5, "slice", transform=axes[0, 0].transAxes, rotation=90,
                    va="center", ha="right")
    axes[1, 0].text(-0.1, 0.5, "pseudo-healthy", transform=axes[1, 0].transAxes, rotation=90,
                    va="center", ha="right")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "pseudo-healthy.png", dpi=90)
    print(f"wrote {args.out / 'pseudo-healthy.png'}")


if __name__ == "__main__":
    main()
