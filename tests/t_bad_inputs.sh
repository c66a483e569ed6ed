#!/usr/bin/env bash
# The bad-input corpus through the command line (issue #6): every malformed
# topology (pipetrain check), data file (pipetrain run --data), schedule file
# (pipetrain schedule --schedule, and pipetrain check naming it as schedule.file) and
# safetensors file (put into a checkpoint whose manifest and COMPLETE vouch for it,
# then pipetrain eval) exits 2 with a message that
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

# the same through the launcher of a 2-stage run: what the file's size tells is
# refused before any stage starts (no stage log); token ids are the stages' to read
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
TWO=(--set model.seq_len=8 --set data.val_fraction=0.1 --set coordinator.port=0 --set stages.0.port=$base
     --set stages.1.port=$((base + 1)) --peer-timeout-ms 2000)
m=$n
while IFS=$'\t' read -r f want; do
    rm -rf "$tmp/run2"
    expect_exit2 "2-stage data $(basename "$f")" "$f" "$want" "$P" run topologies/shakespeare-2stage.json --data "$f" \
        "${TWO[@]}" --out "$tmp/run2"
    case "$(basename "$f")" in token_*) ;; *)
        n=$((n + 1))
        [ ! -e "$tmp/run2/stage-0.log" ] || { echo "  FAIL 2-stage data $(basename "$f"): a stage was started"; fail=1; } ;;
    esac
done < <(each_case tests/bad/data)
echo "  data files, 2 stages: $((n - m)) cases"

# the requirement in numbers (seq_len 8, 10% validation: 90 tokens), 1 and 2 stages;
# a directory stands for an unreadable file (the tests may run as root)
head -c 89 "$CORPUS" >"$tmp/short89.txt"
for topo in shakespeare-1stage shakespeare-2stage; do
    set -- --set model.seq_len=8 --set data.val_fraction=0.1
    [ $topo = shakespeare-2stage ] && set -- "${TWO[@]}"
    expect_exit2 "$topo: 89 bytes" "short89.txt" "89 bytes, need at least 90 for seq_len 8 with a 10% validation split" \
        "$P" run topologies/$topo.json --data "$tmp/short89.txt" "$@" --out "$tmp/r-$topo"
    expect_exit2 "$topo: a directory as data" "$tmp" "not a regular file" \
        "$P" run topologies/$topo.json --data "$tmp" "$@" --out "$tmp/r-$topo"
    expect_exit2 "$topo: missing data" "nothing-here.txt" "cannot open data file" \
        "$P" run topologies/$topo.json --data "$tmp/nothing-here.txt" "$@" --out "$tmp/r-$topo"
    long="$tmp/$(head -c 4070 /dev/zero | tr '\0' o)"
    expect_exit2 "$topo: --out too long" "run directory" "paths are limited to 4095 bytes" \
        "$P" run topologies/$topo.json --data "$CORPUS" "$@" --out "$long"
    long="$tmp/$(head -c $((4054 - ${#tmp} - 1)) /dev/zero | tr '\0' o)" # fits, its checkpoints do not
    expect_exit2 "$topo: checkpoint.dir under --out too long" "checkpoint.dir" "under --out" \
        "$P" run topologies/$topo.json --data "$CORPUS" "$@" --out "$long"
    [ ! -e "$tmp/r-$topo/stage-0.log" ] || { echo "  FAIL $topo: a stage was started"; fail=1; }
done

m=$n
while IFS=$'\t' read -r f want; do
    expect_exit2 "schedule $(basename "$f")" "$f" "$want" "$P" schedule --stages 2 --micro-batches 2 --schedule "$f"
done < <(each_case tests/bad/schedule)
echo "  schedule files: $((n - m)) cases"

# the same files named by a topology: `check` reads and plays the schedule run would run
m=$n
while IFS=$'\t' read -r f want; do
    expect_exit2 "check --schedule $(basename "$f")" "$f" "$want" "$P" check topologies/shakespeare-2stage.json \
        --set train.micro_batches=2 --set schedule.file="$PWD/$f"
done < <(each_case tests/bad/schedule)
echo "  schedule files through check: $((n - m)) cases"

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
