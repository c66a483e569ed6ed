#!/usr/bin/env bash
# The bad-input corpus through the command line (issue #6): every malformed
# topology (pipetrain check), data file (pipetrain run --data), schedule file
# (pipetrain schedule --schedule) and safetensors file (put into a checkpoint
# whose manifest and COMPLETE vouch for it, then pipetrain eval) exits 2 with a message that
# names the file and contains the first line of its .expect. Under make asan the
# same runs prove none of them crashes.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
P="$BIN/pipetrain"
CORPUS=../shared/data/tinyshakespeare.txt
tmp=$(mktemp -d /tmp/t_bad_inputs.XXXXXX); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
# expect_exit2 NAME FILE WANT CMD...: exit 2, stderr names FILE's base name and holds WANT
expect_exit2() {
    local name=$1 file=$2 want=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    n=$((n + 1))
    if [ $rc -eq 2 ] && grep -qF -- "$want" "$tmp/err" && grep -qF -- "$(basename "$file")" "$tmp/err"; then return 0; fi
    echo "  FAIL $name: exit $rc, wanted 2 and '$want' naming $(basename "$file"); stderr: $(head -c 400 "$tmp/err")"
    fail=1
}
# each_case DIR: prints "FILE<TAB>WANT" for every FILE.expect in DIR
each_case() { for e in "$1"/*.expect; do printf '%s\t%s\n' "${e%.expect}" "$(head -n1 "$e")"; done; }

while IFS=$'\t' read -r f want; do
    expect_exit2 "topology $(basename "$f")" "$f" "$want" "$P" check "$f"
done < <(each_case tests/bad/topology)
echo "  topologies: $n cases"

m=$n
while IFS=$'\t' read -r f want; do
    expect_exit2 "data $(basename "$f")" "$f" "$want" "$P" run topologies/shakespeare-1stage.json --data "$f" \
        --set model.seq_len=8 --set data.val_fraction=0.1 --out "$tmp/run"
done < <(each_case tests/bad/data)
echo "  data files: $((n - m)) cases"

m=$n
while IFS=$'\t' read -r f want; do
    expect_exit2 "schedule $(basename "$f")" "$f" "$want" "$P" schedule --stages 2 --micro-batches 2 --schedule "$f"
done < <(each_case tests/bad/schedule)
echo "  schedule files: $((n - m)) cases"

# a real checkpoint to plant bad shards in (a tiny model, 2 steps)
"$P" run topologies/shakespeare-1stage.json --steps 2 --set model.n_layers=1 --set model.dim=32 \
    --set model.ffn_dim=64 --set stages.0.layers=embed,0,head --set train.eval_batches=1 --out "$tmp/ck" >"$tmp/ck.log" 2>&1 \
    || { echo "  FAIL could not make a checkpoint: $(tail -3 "$tmp/ck.log")"; exit 1; }
good="$tmp/ck/checkpoints/step-2"
m=$n
while IFS=$'\t' read -r f want; do
    bad="$tmp/bad-ckpt"
    rm -rf "$bad"; cp -r "$good" "$bad"
    cp "$f" "$bad/stage-0.safetensors"
    size=$(stat -c %s "$bad/stage-0.safetensors")
    sha=$(sha256sum "$bad/stage-0.safetensors" | cut -d' ' -f1)
    # the manifest lists name, bytes, sha256 on consecutive lines: make it vouch for the bad file
    sed -i "/\"name\": \"stage-0.safetensors\"/{n;s/\"bytes\": [0-9]*/\"bytes\": $size/;n;s/\"sha256\": \"[0-9a-f]*\"/\"sha256\": \"$sha\"/}" "$bad/manifest.json"
    # and COMPLETE vouch for the manifest (as anyone without the run's secret can)
    msha=$(sha256sum "$bad/manifest.json" | cut -d' ' -f1)
    sed -i "s/^manifest_sha256 .*/manifest_sha256 $msha/" "$bad/COMPLETE"
    expect_exit2 "checkpoint shard $(basename "$f")" "stage-0.safetensors" "$want" "$P" eval "$bad" --data "$CORPUS"
done < <(each_case tests/bad/safetensors)
echo "  checkpoint shards: $((n - m)) cases"

echo "  $n bad inputs in all"
[ "$n" -ge 30 ] || { echo "  FAIL fewer than 30 cases"; fail=1; }
exit $fail
