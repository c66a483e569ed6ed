#!/usr/bin/env bash
# secret_file is bad input (issue 17, group 5): a FIFO, a directory, a missing
# file, a symbolic link, a file others may read — `run` (one stage and several)
# and `stage` each exit 2 promptly (a FIFO must not block open()) with a
# message that names the secret file and says what is wrong with it.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_secret_file
base=$((24000 + (RANDOM % 100) * 50))
TINY=(--set train.steps=2 --set model.n_layers=1 --set model.dim=32 --set model.ffn_dim=64 --set train.eval_batches=1
      --set coordinator.port=0 --set stages.0.port=$base)
TWO=(--set stages.1.port=$((base + 1)) --set stages.0.layers=embed --set stages.1.layers=0,head)
mkfifo "$tmp/fifo"
mkdir "$tmp/dir"
printf 'a secret of more than sixteen bytes\n' >"$tmp/open"; chmod 644 "$tmp/open"
printf 'a secret of more than sixteen bytes\n' >"$tmp/real"; chmod 600 "$tmp/real"
ln -s "$tmp/real" "$tmp/link"
# expect NAME PATTERN CMD...: exit 2 within 20 s, stderr matching PATTERN
expect() {
    local name=$1 pat=$2; shift 2
    timeout 20 "$@" --out "$tmp/out" >"$tmp/o" 2>"$tmp/e" </dev/null; local rc=$?
    if [ $rc -eq 2 ] && grep -qE -- "$pat" "$tmp/e"; then echo "  ok   $name"
    else echo "  FAIL $name (exit $rc$([ $rc -eq 124 ] && echo ': timed out'), stderr: $(head -c 300 "$tmp/e"))"; fail=1; fi
}
for c in "fifo:fifo.*FIFO" "dir:dir.*directory" "missing:missing.*(no such|does not exist)" "link:link.*symbolic link" \
         "open:open.*mode 644"; do
    f="$tmp/${c%%:*}" pat="${c#*:}"
    expect "run, 1 stage, secret_file ${c%%:*}: exit 2" "$pat" \
        "$P" run topologies/shakespeare-1stage.json "${TINY[@]}" --set stages.0.layers=embed,0,head --set secret_file="$f"
    expect "run, 2 stages, secret_file ${c%%:*}: exit 2" "$pat" \
        "$P" run topologies/shakespeare-2stage.json "${TINY[@]}" "${TWO[@]}" --set secret_file="$f"
    expect "stage, secret_file ${c%%:*}: exit 2" "$pat" \
        "$P" stage topologies/shakespeare-2stage.json --stage 1 --coordinator 127.0.0.1:1 "${TINY[@]}" "${TWO[@]}" \
        --set secret_file="$f"
done
exit $fail
