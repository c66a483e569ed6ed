#!/usr/bin/env bash
# Fine-tuning from a Hugging Face checkpoint (issue 16): a short run is exported;
# `eval` of the exported directory (the init-from loader) gives exactly the
# checkpoint's loss and `sample` the same text; a BF16 copy (written here with
# round-to-nearest-even) evaluates within rounding; `run --init-from` with the
# model section omitted trains from those weights bitwise alike on 1 and 2
# stages, each stage reading only its own tensors, also from the sharded index
# form (the other stage's shard is never opened); mismatching or unsupported
# configs and broken tensors are refused with exit 2 before any stage starts.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_init_from
export OPENBLAS_NUM_THREADS=1
# expect_bad NAME PATTERN CMD...: exit status 2 and stderr matching PATTERN
expect_bad() {
    local name=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    if [ $rc -eq 2 ] && grep -qE -- "$pat" "$tmp/err"; then echo "  ok   $name"
    else echo "  FAIL $name (exit $rc, stderr: $(head -c 400 "$tmp/err"))"; fail=1; fi
}
CORPUS=$(cd "$(dirname "$CORPUS")" && pwd)/$(basename "$CORPUS")
base=$((20000 + RANDOM % 20000))
py=$(command -v python3) || { echo "python3 missing: skipped"; exit 77; }

# topology NAME STAGES-JSON [MODEL-JSON]: a tiny model (dim 32, 2 blocks, GQA)
topology() {
    local model=${3:+\"model\": $3,}
    cat >"$tmp/$1.json" <<EOF
{ $model
  "data": { "path": "$CORPUS" },
  "train": { "steps": 3, "batch_size": 4, "micro_batches": 2, "lr": 0.003, "warmup_steps": 2, "eval_batches": 4 },
  "coordinator": { "host": "127.0.0.1", "port": $base },
  "stages": $2 }
EOF
}
one='[ { "host": "127.0.0.1", "port": '$((base + 1))', "layers": "embed,0-1,head" } ]'
two='[ { "host": "127.0.0.1", "port": '$((base + 2))', "layers": "embed,0" },
       { "host": "127.0.0.1", "port": '$((base + 3))', "layers": "1,head" } ]'
model='{ "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_dim": 64, "vocab_size": 256, "seq_len": 32 }'
topology train "$one" "$model"
topology one "$one"
topology two "$two"

# --- the model to start from: 20 steps, exported
"$P" run "$tmp/train.json" --steps 20 --out "$tmp/r0" >"$tmp/r0.log" 2>&1
check "training run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/r0.log; false; }"
"$P" export "$tmp/r0" --out "$tmp/hf" >/dev/null 2>&1
check "export wrote the directory" "[ -s $tmp/hf/model.safetensors ] && [ -s $tmp/hf/config.json ]"

# --- eval and sample of the exported directory: the checkpoint's numbers
"$P" eval "$tmp/r0" --data "$CORPUS" --json >"$tmp/e_ckpt" 2>&1
"$P" eval "$tmp/hf" --data "$CORPUS" --json >"$tmp/e_hf" 2>&1
check "eval of the export equals eval of the checkpoint ($(cat $tmp/e_ckpt))" "grep -q loss $tmp/e_ckpt && cmp -s $tmp/e_ckpt $tmp/e_hf"
"$P" sample "$tmp/r0" --prompt "ROMEO:" --tokens 60 --seed 5 >"$tmp/s_ckpt" 2>&1
"$P" sample "$tmp/hf" --prompt "ROMEO:" --tokens 60 --seed 5 >"$tmp/s_hf" 2>&1
check "sample of the export is the checkpoint's" "[ -s $tmp/s_ckpt ] && cmp -s $tmp/s_ckpt $tmp/s_hf"

# --- BF16 (round to nearest even) and the sharded index form, written with python's stdlib
"$py" - "$tmp/hf" "$tmp/bf16" "$tmp/sharded" <<'EOF'
import json, os, shutil, struct, sys
src, bf, sh = sys.argv[1:4]
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
names = [k for k in hdr if k != "__metadata__"]
def write(path, tensors):  # tensors: [(name, dtype, shape, bytes)]
    h, off, blobs = {}, 0, []
    for name, dt, shape, b in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}; off += len(b); blobs.append(b)
    t = json.dumps(h).encode(); t += b" " * (-len(t) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(t))); f.write(t); [f.write(b) for b in blobs]
def tensor(k):
    b, e = hdr[k]["data_offsets"]; return data[b:e]
def bf16(b):
    out = bytearray()
    for (u,) in struct.iter_unpack("<I", b):
        if (u & 0x7fffffff) > 0x7f800000: r = (u >> 16) | 0x40
        else: r = (u + 0x7fff + ((u >> 16) & 1)) >> 16
        out += struct.pack("<H", r & 0xffff)
    return bytes(out)
for d in (bf, sh):
    os.makedirs(d); shutil.copy(os.path.join(src, "config.json"), d)
write(os.path.join(bf, "model.safetensors"), [(k, "BF16", hdr[k]["shape"], bf16(tensor(k))) for k in names])
first = lambda k: k == "model.embed_tokens.weight" or k.startswith("model.layers.0.")
files = {True: "model-00001-of-00002.safetensors", False: "model-00002-of-00002.safetensors"}
for part in (True, False):
    write(os.path.join(sh, files[part]), [(k, "F32", hdr[k]["shape"], tensor(k)) for k in names if first(k) == part])
json.dump({"metadata": {"total_size": len(data)}, "weight_map": {k: files[first(k)] for k in names}},
          open(os.path.join(sh, "model.safetensors.index.json"), "w"), indent=2)
EOF
check "python wrote the BF16 and sharded copies" "[ -s $tmp/bf16/model.safetensors ] && [ -s $tmp/sharded/model.safetensors.index.json ]"
"$P" eval "$tmp/bf16" --data "$CORPUS" --json >"$tmp/e_bf16" 2>&1
lf=$(sed 's/.*"loss": \([0-9.]*\).*/\1/' "$tmp/e_hf"); lb=$(sed 's/.*"loss": \([0-9.]*\).*/\1/' "$tmp/e_bf16")
check "BF16 loss ($lb) within 0.01 of F32's ($lf)" "awk 'BEGIN{d=$lb-$lf; exit !(d*d < 1e-4)}'"
# F16 (python's struct "e": IEEE half, round to nearest even)
"$py" - "$tmp/hf" "$tmp/f16" <<'EOF'
import json, os, shutil, struct, sys
src, dst = sys.argv[1:3]
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n]); data = raw[8 + n:]
os.makedirs(dst); shutil.copy(os.path.join(src, "config.json"), dst)
h, off, blobs = {}, 0, []
for k, v in hdr.items():
    if k == "__metadata__": continue
    b, e = v["data_offsets"]; x = struct.unpack("<%df" % ((e - b) // 4), data[b:e])
    blob = struct.pack("<%de" % len(x), *x)
    h[k] = {"dtype": "F16", "shape": v["shape"], "data_offsets": [off, off + len(blob)]}; off += len(blob); blobs.append(blob)
t = json.dumps(h).encode(); t += b" " * (-len(t) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(t))); f.write(t); [f.write(b) for b in blobs]
EOF
"$P" eval "$tmp/f16" --data "$CORPUS" --json >"$tmp/e_f16" 2>&1
lh=$(sed 's/.*"loss": \([0-9.]*\).*/\1/' "$tmp/e_f16")
check "F16 loss ($lh) within 0.001 of F32's ($lf)" "grep -q loss $tmp/e_f16 && awk 'BEGIN{d=$lh-$lf; exit !(d*d < 1e-6)}'"
"$P" eval "$tmp/sharded" --data "$CORPUS" --json >"$tmp/e_sh" 2>&1
check "eval of the sharded form equals F32's" "cmp -s $tmp/e_hf $tmp/e_sh"

# --- run --init-from with the model section omitted: 1 stage, 2 stages, sharded 2 stages
"$P" run "$tmp/one.json" --init-from "$tmp/hf" --out "$tmp/a1" >"$tmp/a1.log" 2>&1
check "1-stage init-from run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/a1.log; false; }"
check "it logs the tensors read" "grep -q 'init-from .*: 21 tensors, 139904 bytes read from model.safetensors' $tmp/a1.log"
l1=$(head -1 "$tmp/a1/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check "its first loss ($l1) is the trained model's, not ln(256)" "awk 'BEGIN{exit !($l1 < 4.8)}'"
"$P" run "$tmp/two.json" --init-from "$tmp/hf" --out "$tmp/a2" >"$tmp/a2.log" 2>&1
check "2-stage init-from run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/a2.log; false; }"
check "stage 0 read its 10 tensors only" "grep -q 'stage 0 replica 0: init-from .*: 10 tensors, 69888 bytes read' $tmp/a2/stage-0.log"
check "stage 1 read its 11 tensors only" "grep -q 'stage 1 replica 0: init-from .*: 11 tensors, 70016 bytes read' $tmp/a2/stage-1.log"
check "1 and 2 stages log the same losses" "cmp -s <(sed 's/, \"step_ms.*//' $tmp/a1/metrics.jsonl) <(sed 's/, \"step_ms.*//' $tmp/a2/metrics.jsonl)"
"$P" export "$tmp/a1" --out "$tmp/x1" >/dev/null 2>&1; "$P" export "$tmp/a2" --out "$tmp/x2" >/dev/null 2>&1
check "1 and 2 stages end with bitwise equal weights" "[ -s $tmp/x1/model.safetensors ] && cmp -s $tmp/x1/model.safetensors $tmp/x2/model.safetensors"
"$P" run "$tmp/two.json" --init-from "$tmp/sharded" --out "$tmp/a3" >"$tmp/a3.log" 2>&1
check "sharded 2-stage init-from run exits 0" "[ $? -eq 0 ] || { tail -5 $tmp/a3.log; false; }"
check "stage 0 opened shard 1 only" "grep -q 'read from model-00001-of-00002.safetensors\$' $tmp/a3/stage-0.log"
check "stage 1 opened shard 2 only" "grep -q 'read from model-00002-of-00002.safetensors\$' $tmp/a3/stage-1.log"
"$P" export "$tmp/a3" --out "$tmp/x3" >/dev/null 2>&1
check "the sharded start trains to the same bits" "cmp -s $tmp/x1/model.safetensors $tmp/x3/model.safetensors"
# tied embeddings: the head's stage loads its copy of model.embed_tokens.weight
"$P" run "$tmp/train.json" --set model.tie_embeddings=true --steps 5 --out "$tmp/rt" >/dev/null 2>&1
"$P" export "$tmp/rt" --out "$tmp/thf" >/dev/null 2>&1
"$P" run "$tmp/one.json" --init-from "$tmp/thf" --out "$tmp/t1" >"$tmp/t1.log" 2>&1
"$P" run "$tmp/two.json" --init-from "$tmp/thf" --out "$tmp/t2" >"$tmp/t2.log" 2>&1
check "tied: the head's stage read the embedding too (11 tensors)" "grep -q 'stage 1 replica 0: init-from .*: 11 tensors' $tmp/t2/stage-1.log"
"$P" export "$tmp/t1" --out "$tmp/tx1" >/dev/null 2>&1; "$P" export "$tmp/t2" --out "$tmp/tx2" >/dev/null 2>&1
check "tied: 1 and 2 stages end with bitwise equal weights" "[ -s $tmp/tx1/model.safetensors ] && cmp -s $tmp/tx1/model.safetensors $tmp/tx2/model.safetensors"
# stage processes started by hand take --init-from too
"$P" stage "$tmp/two.json" --stage 1 --init-from "$tmp/nowhere" >"$tmp/out" 2>"$tmp/err"
check "stage --init-from is checked (exit 2, names config.json)" "[ $? -eq 2 ] && grep -q 'nowhere/config.json' $tmp/err"

# --- refused before any stage starts
expect_bad "mismatching model section" "train.json: model.dim is 64 but .*/hf/config.json has hidden_size 32" \
    "$P" run "$tmp/train.json" --init-from "$tmp/hf" --set model.dim=64 --out "$tmp/b1"
check "... and nothing was trained" "[ ! -e $tmp/b1/metrics.jsonl ]"
expect_bad "check names the mismatch too" "model.n_kv_heads is 4 but .*config.json has num_key_value_heads 2" \
    "$P" check "$tmp/train.json" --init-from "$tmp/hf" --set model.n_kv_heads=4
expect_bad "seq_len beyond max_position_embeddings" "model.seq_len is 64 but .*max_position_embeddings 32" \
    "$P" run "$tmp/one.json" --init-from "$tmp/hf" --set model.seq_len=64 --out "$tmp/b2"
mkdir -p "$tmp/rope" && cp "$tmp/hf/model.safetensors" "$tmp/rope/" &&
    sed 's/"rope_theta"/"rope_scaling": {"type": "linear", "factor": 2.0}, "rope_theta"/' "$tmp/hf/config.json" >"$tmp/rope/config.json"
expect_bad "rope_scaling refused" "rope/config.json: rope_scaling: not supported" \
    "$P" run "$tmp/one.json" --init-from "$tmp/rope" --out "$tmp/b3"
rm "$tmp/sharded/model-00002-of-00002.safetensors"
expect_bad "a missing shard is named" "model-00002-of-00002.safetensors: cannot open" \
    "$P" run "$tmp/two.json" --init-from "$tmp/sharded" --out "$tmp/b4"
head -c 100000 "$tmp/hf/model.safetensors" >"$tmp/bf16/model.safetensors"
expect_bad "a truncated file names file and tensor" "bf16/model.safetensors: tensor .* run past the end of the file" \
    "$P" run "$tmp/one.json" --init-from "$tmp/bf16" --out "$tmp/b5"
expect_bad "init_from with parameter servers refused" "init_from: not supported with sync \"ps\"" \
    "$P" check "$tmp/two.json" --init-from "$tmp/hf" --set sync=ps
exit $fail
