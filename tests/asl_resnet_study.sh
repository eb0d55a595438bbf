#!/usr/bin/env bash
# asl_resnet study on a tiny set: every planned run happens once, the tables, CSV, JSON and the
# gnuplot charts are written, CPU figures are labelled as such; a folder is packed once;
# projected rows for more devices come in their own table and file.
# Usage: asl_resnet_study.sh BIN PYTHON
set -euo pipefail
BIN=$1
PY=$2
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$BIN" synth --out "$DIR/data" --per-class 4 --seed 3 > /dev/null
"$BIN" study --data "$DIR/data" --out "$DIR/study" --max-devices 2 --epochs 1 --samples 116 \
  --archs resnet18,linear --model-epochs 2 --image-size 32 --batch-size 16 --workers 1 > "$DIR/out.txt"
grep -q "^study: 9 runs on 2 cpu device(s) (CPU figures" "$DIR/out.txt"
grep -q "^\[9/9\] linear single x1 batch 16" "$DIR/out.txt"
test -s "$DIR/study/data.pxpack"   # the folder was decoded once, for every run
for f in study.md study.csv study.json scaling_time.png scaling_efficiency.png models.png; do
  test -s "$DIR/study/$f" || { echo "missing $f"; cat "$DIR/study/charts.log" 2>/dev/null; exit 1; }
done
if ls "$DIR/study"/*.tmp 2> /dev/null; then echo "FAILED: temporary files left"; exit 1; fi
grep -q "## Strong scaling (fixed global batch 16) — CPU figures" "$DIR/study/study.md"
grep -q "no GPU: devices are CPU replicas" "$DIR/study/study.md"
"$PY" - "$DIR/study" <<'PY'
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(f"{d}/study.csv")))
strong = [(r["policy"], int(r["devices"]), int(r["global_batch"])) for r in rows if r["study"] == "strong"]
weak = [(r["policy"], int(r["devices"]), int(r["global_batch"])) for r in rows if r["study"] == "weak"]
assert strong == [("single", 1, 16), ("dp:1", 1, 16), ("dp:2", 2, 16), ("ddp:gloo", 1, 16), ("ddp:gloo", 2, 16)], strong
assert weak == [("single", 1, 16), ("dp:1", 1, 16), ("dp:2", 2, 32), ("ddp:gloo", 1, 16), ("ddp:gloo", 2, 32)], weak
assert [r["arch"] for r in rows if r["study"] == "model"] == ["resnet18", "linear"]
for r in rows:
    assert r["device_kind"] == "cpu" and float(r["wall_seconds"]) > 0
    if r["study"] != "model":
        speedup = float(r["speedup"]); assert speedup > 0
        assert abs(float(r["efficiency"]) - speedup / int(r["devices"])) < 1e-3
single = [r for r in rows if r["study"] == "strong" and r["policy"] == "single"][0]
assert abs(float(single["speedup"]) - 1) < 1e-9
j = json.load(open(f"{d}/study.json"))
assert j["device_kind"] == "cpu" and len(j["rows"]) == len(rows)
models = [r for r in j["rows"] if r["study"] == "model"]
assert [len(m["metrics"]["epochs"]) for m in models] == [2, 2]
# Projected rows: 4 and 8 devices (2 are present) per link, in their own file and table, from
# the measured one-device step; more devices never project a shorter step or more than 100%.
proj = list(csv.DictReader(open(f"{d}/projection.csv")))
assert [(p["link"], int(p["devices"])) for p in proj] == [("nvlink", 4), ("nvlink", 8), ("pcie", 4), ("pcie", 8)], proj
measured = 16 / float(single["images_per_second"])
for p in proj:
    assert abs(float(p["measured_step_seconds"]) - measured) < 1e-3 * measured, (p, measured)
    assert float(p["projected_step_seconds"]) >= float(p["measured_step_seconds"])
    assert 0 < float(p["efficiency"]) <= 1
    assert int(p["gradient_bytes"]) > 40_000_000   # resnet18's 11.2 M float parameters
assert float(proj[3]["projected_step_seconds"]) >= float(proj[1]["projected_step_seconds"])  # pcie slower
assert len(j["projected"]) == 4 and all(r["study"] != "projected" for r in j["rows"])
PY
grep -q "## Projected weak scaling — estimates, not measurements" "$DIR/study/study.md"
# PNG files, not placeholders.
"$PY" -c "import sys; assert open(sys.argv[1],'rb').read(8) == b'\x89PNG\r\n\x1a\n'" "$DIR/study/models.png"
echo "asl_resnet study: ok"
