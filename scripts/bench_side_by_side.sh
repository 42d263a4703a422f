#!/usr/bin/env bash
# ctrbench and the peers, one after another in one sitting, on the same data and model shape
# (docs/performance.md). The peers run in their own virtual environment (../shared/bench/setup_venv.sh),
# never in ctrbench's. FuxiCTR's DIN needs its model file in $HARNESS/vendor (see the harness's
# peer_din.py); without it that line prints why and the others still run.
#   PEERS_PY=/path/peers-venv/bin/python SYN=/path/syn BARS=/path/syn-bars bash scripts/bench_side_by_side.sh OUT.jsonl
set -u
OUT=${1:?usage: bench_side_by_side.sh OUT.jsonl}
HARNESS=${HARNESS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench}
: "${PEERS_PY:?the python of the peers venv}" "${SYN:?the make_synthetic.py output folder}" "${BARS:?the npz_to_bars.py output folder}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ours() { python "$ROOT/scripts/bench.py" --bars-csv "$BARS" --model "$1" --batch 1024 --threads 2 --epochs 1 --embedding-dim 18 --jsonl "$OUT" >/dev/null; }
peer() { (cd "$HARNESS" && "$PEERS_PY" peer_din.py --lib "$1" --model "$2" --data "$SYN" --epochs 1 --batch 1024 --threads 2 --emb 18 ${3:-} --jsonl "$OUT" >/dev/null); }
ours din
peer fuxictr din
peer deepctr din
peer rechub din
ours din
peer deepctr dien "--max-batches 100"
ours dien
