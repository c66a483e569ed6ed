#!/usr/bin/env bash
# End-to-end: the byte-level BPE. Trains a 4096-token tokenizer on the Shakespeare
# corpus, tokenizes it, and compares the ids with tests/helpers/bpe_ref.py, an
# independent pure-Python encoder of Hugging Face's byte-level BPE (the
# `tokenizers` package is not in Debian; bpe_ref.py uses python3-regex for GPT-2's
# regex) — also on a non-ASCII text and with merges in the [a, b] array form.
# Then a short run with data.tokenizer: sample decodes with it, eval gives the
# run's val_loss and bits per byte, export writes tokenizer.json and
# tokenizer_config.json; and the bad inputs, each exit 2 naming file and field.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_tokenizer
export OPENBLAS_NUM_THREADS=1
# expect_bad NAME PATTERN CMD...: exit status 2 and stderr matching PATTERN
expect_bad() {
    local name=$1 pat=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    if [ $rc -eq 2 ] && grep -qE -- "$pat" "$tmp/err"; then echo "  ok   $name"
    else echo "  FAIL $name (exit $rc, stderr: $(head -c 300 "$tmp/err"))"; fail=1; fi
}
ref() { python3 tests/helpers/bpe_ref.py "$@"; }

# --- train and tokenize the corpus; the ids agree with the reference
"$P" tokenizer train "$CORPUS" --vocab 4096 --out "$tmp/tok.json" >"$tmp/train.log" 2>&1
check "tokenizer train exits 0" "[ $? -eq 0 ] || { cat $tmp/train.log; false; }"
cat "$tmp/train.log"
check "4096 ids, 3839 merges" "grep -q 'learned 3839 merges.*vocabulary 4096' $tmp/train.log"
"$P" tokenize "$tmp/tok.json" "$CORPUS" --out "$tmp/sh.bin" >"$tmp/tok.log" 2>&1
check "tokenize exits 0" "[ $? -eq 0 ] || { cat $tmp/tok.log; false; }"
cat "$tmp/tok.log"
check "ids = the Python reference's (Shakespeare)" "ref $tmp/tok.json $CORPUS $tmp/sh.bin"

# --- non-ASCII text (letters, digits, contractions, whitespace runs of every kind)
if python3 -c 'import regex' 2>/dev/null; then
    python3 - "$tmp/uni.txt" <<'EOF'
import sys
t = ("Café naïve résumé — «quoted» I'll we're you've HE'S 'tis\n\n\n  spaced\t\ttabs  \n"
     "привет мир, Ελληνικά γράμματα; 日本語のテキスト 한국어 123 4567 ١٢٣ x² ¼\u00a0nbsp\u3000ideo\r\n"
     "ñandú Ærø ŒUVRE ǅ ʃʒ 3.14159 1,000,000 $5 @user #tag ...!!! ??? end  ") * 40
open(sys.argv[1], "w", encoding="utf-8").write(t)
EOF
    "$P" tokenizer train "$tmp/uni.txt" --vocab 600 --out "$tmp/uni.json" >/dev/null 2>&1 &&
    "$P" tokenize "$tmp/uni.json" "$tmp/uni.txt" --out "$tmp/uni.bin" >/dev/null 2>&1
    check "non-ASCII: ids = the reference's (own tokenizer)" "ref $tmp/uni.json $tmp/uni.txt $tmp/uni.bin"
    "$P" tokenize "$tmp/tok.json" "$tmp/uni.txt" --out "$tmp/uni2.bin" >/dev/null 2>&1
    check "non-ASCII: ids = the reference's (Shakespeare tokenizer)" "ref $tmp/tok.json $tmp/uni.txt $tmp/uni2.bin"
else
    echo "  note: python3-regex missing: the non-ASCII comparison is skipped (make test installs it)"
fi

# --- merges as [a, b] arrays (tokenizers >= 0.20), ignore_merges present: same ids
python3 - "$tmp/tok.json" "$tmp/arr.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
d["model"]["merges"] = [m.split(" ") for m in d["model"]["merges"]]
d["model"]["ignore_merges"] = False
json.dump(d, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
EOF
"$P" tokenize "$tmp/arr.json" "$CORPUS" --out "$tmp/arr.bin" >/dev/null 2>&1
check "array-form merges give the same ids" "cmp -s $tmp/sh.bin $tmp/arr.bin"
"$P" tokenize "$tmp/tok.json" "$CORPUS" --out "$tmp/sh.u32.bin" >/dev/null 2>&1
check ".u32.bin holds the same ids as uint32" "ref $tmp/tok.json $CORPUS $tmp/sh.u32.bin"

# --- bad inputs
head -c 5000 "$tmp/tok.json" >"$tmp/cut.json"
expect_bad "corrupt tokenizer.json" "cut.json: not a tokenizer.json: line" "$P" tokenize "$tmp/cut.json" "$CORPUS" --out "$tmp/x.bin"
expect_bad "vocab too small" "--vocab: expected at least 257" "$P" tokenizer train "$CORPUS" --vocab 256 --out "$tmp/x.json"
sed 's/"Ġ t"/"Ġ tQQ"/' "$tmp/tok.json" >"$tmp/unk.json"
expect_bad "unknown merges token" 'unk.json: model.merges\[0\]: unknown token "tQQ"' "$P" tokenize "$tmp/unk.json" "$CORPUS" --out "$tmp/x.bin"
expect_bad "missing corpus" "nope.txt: cannot open" "$P" tokenizer train "$tmp/nope.txt" --vocab 300 --out "$tmp/x.json"
: >"$tmp/empty.txt"
expect_bad "empty corpus (train)" "empty.txt: empty file \(offset 0\)" "$P" tokenizer train "$tmp/empty.txt" --vocab 300 --out "$tmp/e.json"
check "... and no tokenizer.json written" "[ ! -e $tmp/e.json ]"
expect_bad "empty corpus (tokenize)" "empty.txt: empty file \(offset 0\)" "$P" tokenize "$tmp/tok.json" "$tmp/empty.txt" --out "$tmp/e.bin"
check "... and no .bin written" "[ ! -e $tmp/e.bin ]"
expect_bad "vocab_size must match data.tokenizer" "shakespeare-bpe.json: model.vocab_size: expected 4096" \
    "$P" run topologies/shakespeare-bpe.json --steps 1 --out "$tmp/bad" --set "data.tokenizer=$tmp/tok.json" \
    --set model.vocab_size=256
expect_bad "corrupt data.tokenizer" "data.tokenizer: .*cut.json" \
    "$P" run topologies/shakespeare-bpe.json --steps 1 --out "$tmp/bad" --set "data.tokenizer=$tmp/cut.json"
check "no run directory left by refused runs" "[ ! -e $tmp/bad ]"

# --- a short run with data.tokenizer, then sample, eval, export
steps=6
"$P" run topologies/shakespeare-bpe.json --steps $steps --out "$tmp/run" --set "data.tokenizer=$tmp/tok.json" \
    --set model.dim=32 --set model.n_heads=2 --set model.n_kv_heads=2 --set model.ffn_dim=64 --set model.n_layers=1 \
    --set model.seq_len=32 --set train.batch_size=4 --set stages.0.threads=1 --set stages.0.layers=embed,0,head --set train.eval_every=0 \
    --set train.eval_batches=2 --set train.warmup_steps=1 --set train.log_every=3 >"$tmp/run.log" 2>&1
rc=$?
check "run with data.tokenizer exits 0" "[ $rc -eq 0 ] || { cat $tmp/run.log; false; }"
check "the run keeps tokenizer.json" "cmp -s $tmp/tok.json $tmp/run/tokenizer.json"
"$P" sample "$tmp/run" --prompt "ROMEO:" --tokens 20 --seed 1 >"$tmp/sample.txt" 2>&1
check "sample decodes BPE tokens to text" "[ \$(wc -c <$tmp/sample.txt) -gt 30 ] && head -c 6 $tmp/sample.txt | grep -q ROMEO:"
"$P" eval "$tmp/run" --data "$CORPUS" --json >"$tmp/eval.json" 2>&1
check "eval --json reports bits_per_byte" "grep -q '\"bits_per_byte\": [0-9]' $tmp/eval.json || { cat $tmp/eval.json; false; }"
val=$(sed -n 's/.*"val_loss": \([0-9.]*\).*/\1/p' "$tmp/run/summary.json")
loss=$(sed -n 's/.*"loss": \([0-9.]*\),.*/\1/p' "$tmp/eval.json")
check "eval's loss = the run's val_loss ($val, $loss)" "python3 -c 'import sys; sys.exit(abs($val - $loss) > 1e-4)'"
check "bits/byte = loss x tokens / bytes / ln 2" "python3 -c '
import json, math, sys
e = json.load(open(\"$tmp/eval.json\"))
sys.exit(abs(e[\"loss\"] * e[\"tokens\"] / e[\"bytes\"] / math.log(2) - e[\"bits_per_byte\"]) > 1e-4)'"
# summary.json reports val_loss in bits per byte too, the number eval gives (a run
# with a tokenizer, and byte-level below, so they compare)
check "summary.json val_bits_per_byte = eval's bits_per_byte" "python3 -c '
import json, sys
e = json.load(open(\"$tmp/eval.json\")); s = json.load(open(\"$tmp/run/summary.json\"))
sys.exit(abs(s[\"val_bits_per_byte\"] - e[\"bits_per_byte\"]) > 1e-5 or abs(s[\"val_bytes_per_token\"] - e[\"bytes\"] / e[\"tokens\"]) > 1e-9)' || grep bits $tmp/run/summary.json"
"$P" export "$tmp/run" --out "$tmp/hf" >/dev/null 2>&1
check "export copies tokenizer.json" "cmp -s $tmp/tok.json $tmp/hf/tokenizer.json"
check "export writes tokenizer_config.json" "python3 -c '
import json, sys
c = json.load(open(\"$tmp/hf/tokenizer_config.json\")); m = json.load(open(\"$tmp/hf/config.json\"))
sys.exit(not (c[\"tokenizer_class\"] == \"PreTrainedTokenizerFast\" and c[\"eos_token\"] == \"<|endoftext|>\"
              and m[\"eos_token_id\"] == 4095 and m[\"vocab_size\"] == 4096))'"
# --- two stage processes each load data.tokenizer: the same losses as one process
base=$((20000 + (RANDOM % 120) * 100 + ($$ % 50)))
TWO=(--steps 4 --set "data.tokenizer=$tmp/tok.json" --set model.vocab_size=4096 --set model.dim=32 --set model.n_heads=2
     --set model.n_kv_heads=2 --set model.ffn_dim=64 --set model.n_layers=2 --set model.seq_len=32
     --set train.batch_size=4 --set train.eval_every=0 --set train.eval_batches=2 --set train.warmup_steps=1)
"$P" run topologies/shakespeare-2stage.json "${TWO[@]}" --out "$tmp/two" --set coordinator.port=0 \
    --set stages.0.port=$base --set stages.1.port=$((base + 1)) --set stages.0.layers=embed,0 \
    --set stages.1.layers=1,head >"$tmp/two.log" 2>&1
check "2-stage run with data.tokenizer exits 0" "[ $? -eq 0 ] || { tail -20 $tmp/two.log; false; }"
"$P" run topologies/shakespeare-bpe.json "${TWO[@]}" --out "$tmp/one" --set stages.0.layers=embed,0-1,head \
    --set stages.0.threads=1 --set train.micro_batches=4 >"$tmp/one.log" 2>&1
loss_of() { sed -n 's/.*"final_loss": \([0-9.]*\).*/\1/p' "$1/summary.json"; }
check "2-stage final loss = 1-stage's ($(loss_of $tmp/two), $(loss_of $tmp/one))" \
    "[ -n \"\$(loss_of $tmp/two)\" ] && [ \"\$(loss_of $tmp/two)\" = \"\$(loss_of $tmp/one)\" ]"

check "2-stage summary.json: val_bits_per_byte = val_loss x tokens / bytes / ln 2" "python3 -c '
import json, math, sys
e = json.load(open(\"$tmp/eval.json\")); s = json.load(open(\"$tmp/two/summary.json\"))
sys.exit(abs(s[\"val_loss\"] * e[\"tokens\"] / e[\"bytes\"] / math.log(2) - s[\"val_bits_per_byte\"]) > 1e-9)'"
"$P" run topologies/shakespeare-1stage.json --steps 2 --out "$tmp/byte" --set model.dim=32 --set model.n_heads=2 \
    --set model.n_kv_heads=2 --set model.ffn_dim=64 --set model.n_layers=1 --set model.seq_len=32 --set train.batch_size=4 \
    --set stages.0.threads=1 --set stages.0.layers=embed,0,head --set train.eval_batches=2 >"$tmp/byte.log" 2>&1
"$P" eval "$tmp/byte" --data "$CORPUS" --json >"$tmp/ebyte.json" 2>&1
check "byte-level summary.json: val_bits_per_byte = eval's, 1 byte per token" "python3 -c '
import json, sys
e = json.load(open(\"$tmp/ebyte.json\")); s = json.load(open(\"$tmp/byte/summary.json\"))
sys.exit(abs(s[\"val_bits_per_byte\"] - e[\"bits_per_byte\"]) > 1e-5 or s[\"val_bytes_per_token\"] != 1)'"
"$P" sample "$tmp/run" --tokens 5 --tokenizer "$tmp/uni.json" >/dev/null 2>"$tmp/err"
check "sample refuses a tokenizer of another vocabulary" "[ $? -eq 2 ] && grep -q 'model.vocab_size is 4096' $tmp/err"
exit $fail
