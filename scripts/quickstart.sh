#!/usr/bin/env bash
# The offline quickstart: set up, generate the synthetic dataset, train the SLN (config quickstart),
# evaluate it on the synthetic val split, and draw overlays for a handful of val images.
# Everything lands under output/quickstart/ (and datasets/synthetic/).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
start=$(date +%s)
bash scripts/setup.sh
python=".venv/bin/python"
config="sln_amodal/config/yaml/quickstart.yaml"
data="datasets/synthetic"
run="output/quickstart"

echo "[quickstart] generating the synthetic dataset in $data"
"$python" scripts/make_synthetic.py --out "$data" --config "$config" --force

echo "[quickstart] training (TensorBoard: .venv/bin/tensorboard --logdir $run/train)"
rm -rf "$run"
"$python" amodal_train.py train --dataset "$data" --model none --config "$config" --logs "$run/train"

echo "[quickstart] evaluating on the val split"
"$python" amodal_train.py evaluate --dataset "$data" --model "$run/train/model_final.pth" --out "$run/eval"

echo "[quickstart] drawing overlays for a few val images"
mkdir -p "$run/sample_images"
# An array, not `| head`: under pipefail, head closing the pipe early fails the script (SIGPIPE).
mapfile -t val_images < <(find "$data/images/val" -name '*.png' | sort)
cp "${val_images[@]:0:8}" "$run/sample_images/"
"$python" amodal_test.py --images "$run/sample_images" --model "$run/train/model_final.pth" --out "$run/test"

echo
echo "[quickstart] done in $(( $(date +%s) - start )) s"
echo "  metrics:    $run/eval/metrics.json (tables above), PR curves $run/eval/pr_curves.png"
echo "  overlays:   $run/test/*.png (visible filled, hidden hatched, #rank = depth order)"
echo "  training:   $run/train (checkpoints, config.yaml, TensorBoard events)"
