#!/usr/bin/env bash
# Augmentation ablation of the default model's recipe (configs/mix/joint-lite0.yaml): one
# short fine-tuning run per variant, every run from the same start (models/figshare, the
# same figshare fold 0 held out), the same data order and budget; only the augmentation
# differs. Then `tumorscope robustness` scores every variant on the same held-out slices under
# each artefact. Usage: scripts/augmentation-ablation.sh [STEPS] (default 150 training steps).
# Rerun to resume: finished variants are kept, interrupted ones resume. The variants are not
# calibrated, so robustness's "flagged" column reflects the pixel input checks only.
# Needs bash >= 4 and `tumorscope` on PATH (make setup; . .venv/bin/activate).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-150}
CONFIG=configs/mix/joint-lite0.yaml
BUDGET="trainer.epochs=1 trainer.limit_train_batches=$STEPS trainer.limit_val_batches=40 scheduler.warmup_epochs=0"
ARTEFACTS="augment.bias_field=0 augment.ghosting=0 augment.motion=0 augment.spike=0"
DEGRADATION="augment.blur=0 augment.noise=0 augment.downscale=0 augment.jpeg=0"
CONTRAST="augment.brightness_contrast=0 augment.gamma=0"
declare -A VARIANTS=(
  [all]=""
  [no-mri-artefacts]="$ARTEFACTS"
  [no-degradation]="$DEGRADATION"
  [no-contrast]="$CONTRAST"
  [geometry-only]="$ARTEFACTS $DEGRADATION $CONTRAST"
)
ORDER=(all no-mri-artefacts no-degradation no-contrast geometry-only)
CHECKPOINTS=()
for name in "${ORDER[@]}"; do
  run=runs/ablation-$name
  if [ -f "$run/config.yaml" ] && ! grep -q "limit_train_batches: $STEPS\$" "$run/config.yaml"; then
    echo "$run was trained with another budget than $STEPS steps; move it away first" >&2
    exit 2
  fi
  if [ ! -f "$run/model/model.json" ]; then
    if compgen -G "$run/checkpoints/*.ckpt" > /dev/null; then
      tumorscope train --resume "$run"
    else
      # shellcheck disable=SC2086
      tumorscope train --config "$CONFIG" --run-name "ablation-$name" $BUDGET ${VARIANTS[$name]}
    fi
  fi
  CHECKPOINTS+=(--checkpoint "$run/model")
done
tumorscope robustness "${CHECKPOINTS[@]}" --limit 200 --probes 5 --out docs/trust/ablation
