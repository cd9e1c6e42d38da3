#!/usr/bin/env bash
# Proves the wheel: run atrous, installed from a wheel (not -e), from a folder outside the checkout.
# Usage: scripts/wheel_smoke.sh VENV_BIN   (the bin/ folder of a virtualenv the wheel is installed in)
set -euo pipefail
BIN="$(cd "$1" && pwd)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# The package comes from site-packages, never from a checkout.
"$BIN/python" - <<'PY'
import pathlib
import atrous
root = pathlib.Path(atrous.__file__).parent
assert "site-packages" in str(root), f"atrous imported from {root}, not from an installed wheel"
assert (root / "py.typed").is_file(), "py.typed missing from the wheel"
assert (root / "configs" / "denseaspp_report" / "table1_model4.yaml").is_file(), "configs missing from the wheel"
print(f"wheel: atrous {atrous.__version__} from {root}")
PY

"$BIN/atrous" zoo > zoo.md
rows=$(grep -c '^| `' zoo.md)
test "$rows" -ge 20 || { echo "atrous zoo lists $rows configs"; exit 1; }
echo "wheel: atrous zoo lists $rows packaged configs"

"$BIN/atrous" info --config denseaspp_report/table1_model4 --json > info.json
"$BIN/python" -c "import json; n = json.load(open('info.json'))['params_trainable']; assert n == 2252820, n; print(f'wheel: denseaspp_report/table1_model4 has {n:,} trainable parameters')"

# Two training steps of the demo config (tiny splits), then predict with its checkpoint.
"$BIN/atrous" fit --config demo/denseaspp_resnet18_small train.output_dir=run train.max_steps=2 \
    train.max_epochs=null data.train.length=4 data.val.length=2 data.batch_size=2 data.num_workers=0 \
    train.progress_bar=false > fit.log
test -f run/checkpoints/last.ckpt
"$BIN/python" -c "from PIL import Image; Image.new('RGB', (128, 64), (90, 120, 150)).save('street.png')"
"$BIN/atrous" predict street.png --checkpoint run/checkpoints/last.ckpt --output pred --no-progress --device cpu
test -f pred/street_labels.png
echo "wheel: fit (2 steps) and predict ran outside the checkout"

# The other README commands that need no dataset (the synthetic streets are built in).
"$BIN/atrous" validate --checkpoint run/checkpoints/last.ckpt --output val data.val.length=2 train.progress_bar=false > validate.log
test -f val/metrics.json
"$BIN/atrous" export --checkpoint run/checkpoints/last.ckpt --format torchscript --output model.pt --image-size 64 128 > export.log
"$BIN/atrous" benchmark --config demo/denseaspp_resnet18_small --phases inference --repeats 1 --warmup 0 \
    --image-size 64 128 > benchmark.log
"$BIN/atrous" weights > weights.md
grep -q deeplabv3-resnet50-coco-voc weights.md
echo "wheel: validate, export, benchmark and weights ran outside the checkout"

# The engines from the wheel's extras (make wheel-check installs [export,openvino]): predict in
# OpenVINO, int8 quantization and validate with the quantized model; the cache stays in $WORK.
export ATROUS_CACHE_DIR="$WORK/cache"
"$BIN/atrous" predict street.png --checkpoint run/checkpoints/last.ckpt --output pred-ov --no-progress --device cpu \
    --engine openvino 2> predict-ov.log
test -f pred-ov/street_labels.png
"$BIN/atrous" quantize --checkpoint run/checkpoints/last.ckpt --engine openvino --num-images 2 --output int8 \
    --repeats 1 data.train.length=4 data.val.length=2 > quantize.log 2>&1
test -f int8/report.json
"$BIN/atrous" validate --checkpoint run/checkpoints/last.ckpt --output val-int8 --engine openvino --precision int8 \
    --quantized int8 data.val.length=2 train.progress_bar=false > validate-int8.log 2>&1
test -f val-int8/metrics.json
echo "wheel: predict in OpenVINO, quantize to int8 and validate the int8 model ran outside the checkout"

# The README's Python examples, with the installed package, from this folder.
"$BIN/python" - "$REPO/README.md" <<'PY'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.S)
namespace = {}
for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)
print(f"wheel: the README's {len(blocks)} Python examples ran outside the checkout")
PY
