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

# The keyword API of the README on a timm encoder (the `timm` extra), and its config saved and built back.
"$BIN/python" - <<'PY'
import torch
import atrous
model = atrous.create_model("deeplabv3plus", encoder="timm/regnetx_002", num_classes=5, output_stride=16, in_channels=4)
assert model.eval()(torch.randn(1, 4, 64, 64)).shape == (1, 5, 64, 64)
again = atrous.build_model(atrous.save_config(model.config, "plus.yaml"))
again.load_state_dict(model.state_dict())
print("wheel: create_model('deeplabv3plus', encoder='timm/regnetx_002') and its saved config build the same model")
PY

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

# atrous serve (the [serve] extra) with the int8 model: the page, the API, and a clean stop on SIGTERM.
PORT=$("$BIN/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$BIN/atrous" serve --checkpoint run/checkpoints/last.ckpt --engine openvino --precision int8 --quantized int8 \
    --device cpu --port "$PORT" > serve.log 2>&1 &
SERVER=$!
"$BIN/python" - "$PORT" <<'PY'
import io, json, sys, time, urllib.request
from PIL import Image
url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(600):  # bounded: 2 minutes to start
    try:
        health = json.load(urllib.request.urlopen(f"{url}/health", timeout=5))
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("atrous serve did not start (serve.log)")
assert "openvino int8" in health["model"], health
assert 'id="legend"' in urllib.request.urlopen(f"{url}/", timeout=30).read().decode()
request = urllib.request.Request(f"{url}/segment?format=labels", data=open("street.png", "rb").read(), method="POST")
labels = Image.open(io.BytesIO(urllib.request.urlopen(request, timeout=120).read()))
assert labels.size == (128, 64), labels.size
print("wheel: atrous serve (OpenVINO int8) served the page and the API outside the checkout")
PY
kill -TERM "$SERVER"
wait "$SERVER" || true  # uvicorn ends by re-raising SIGTERM once shut down
grep -q "Finished server process" serve.log

# The README's Python examples, with the installed package, from this folder.
"$BIN/python" - "$REPO/README.md" <<'PY'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), flags=re.S)
namespace = {}
for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)
print(f"wheel: the README's {len(blocks)} Python examples ran outside the checkout")
PY
