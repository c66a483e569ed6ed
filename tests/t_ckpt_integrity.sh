#!/usr/bin/env bash
# Checkpoint integrity (issue 17, group 4 and checkpoints/latest): every
# tampering someone without the run's secret can do — a shard dropped from the
# manifest and altered, model.n_layers edited, the step edited, the embedding
# stored transposed with its hash recomputed, the manifest edited without
# COMPLETE — is refused by eval, export and run --resume with exit 2 and a
# message naming the file and the field; with a secret, a forgery whose
# manifest and COMPLETE were recomputed without the key is refused by the
# HMAC. An honest checkpoint still loads. A hostile checkpoints/latest is
# reported as what it is, not as a missing checkpoint.
set -u
cd "$(dirname "$0")/.."
. tests/lib.sh t_ckpt_integrity
T="$BIN/tests/ckpt_tamper"
TINY=(--set model.n_layers=2 --set model.dim=32 --set model.ffn_dim=64 --set train.eval_batches=1
      --set stages.0.layers=embed,0-1,head --set stages.0.threads=1 --set checkpoint.every=2)
RUN=("$P" run topologies/shakespeare-1stage.json "${TINY[@]}")
run() { "${RUN[@]}" "$@"; }
run --steps 4 --out "$tmp/ok" >"$tmp/ok.log" 2>&1 || { echo "  FAIL the honest run: $(tail -3 "$tmp/ok.log")"; exit 1; }
printf 'the secret of this run, 32 bytes\n' >"$tmp/secret"; chmod 600 "$tmp/secret"
run --steps 4 --set secret_file="$tmp/secret" --out "$tmp/sec" >"$tmp/sec.log" 2>&1 ||
    { echo "  FAIL the run with a secret: $(tail -3 "$tmp/sec.log")"; exit 1; }

# expect NAME PATTERN CMD...: exit 2 and stderr matching PATTERN
expect() {
    local name=$1 pat=$2; shift 2
    timeout 60 "$@" >"$tmp/o" 2>"$tmp/e" </dev/null; local rc=$?
    if [ $rc -eq 2 ] && grep -qE -- "$pat" "$tmp/e"; then echo "  ok   $name"
    else echo "  FAIL $name (exit $rc, stderr: $(head -c 400 "$tmp/e"))"; fail=1; fi
}
# fresh SRC NAME: a copy of run SRC to tamper with
fresh() { rm -rf "$tmp/$2"; cp -r "$tmp/$1" "$tmp/$2"; }
# all3 NAME PATTERN DIR [ARGS]: eval, export and --resume of DIR's latest checkpoint all refuse it
all3() {
    local name=$1 pat=$2 d=$3; shift 3
    expect "$name: eval refuses it" "$pat" "$P" eval "$d" --data "$CORPUS" "$@"
    expect "$name: export refuses it" "$pat" "$P" export "$d" --out "$tmp/export-$name" "$@"
    check "$name: export left nothing behind" "[ ! -e $tmp/export-$name/model.safetensors ]"
    local sf=(); [ $# -gt 0 ] && sf=(--set secret_file="$2")
    expect "$name: run --resume refuses it" "$pat" "${RUN[@]}" --steps 20 "${sf[@]}" --out "$d" --resume
}

# --- the honest checkpoints load
"$P" eval "$tmp/ok" --data "$CORPUS" --json >"$tmp/o" 2>"$tmp/e"
check "honest checkpoint: eval exits 0" "[ $? -eq 0 ] || cat $tmp/e"
"$P" eval "$tmp/sec" --data "$CORPUS" --secret-file "$tmp/secret" --json >"$tmp/o" 2>"$tmp/e"
check "honest checkpoint with a secret: eval --secret-file exits 0" "[ $? -eq 0 ] || cat $tmp/e"
"$P" eval "$tmp/sec" --data "$CORPUS" --json >"$tmp/o" 2>"$tmp/e"
check "with a secret, eval without it: exit 0 and a note that the HMAC was not checked" \
    "[ $? -eq 0 ] && grep -q 'HMAC .*not checked' $tmp/e"
check "COMPLETE pins the manifest; with a secret also its HMAC" \
    "grep -q '^manifest_sha256 [0-9a-f]\{64\}$' $tmp/ok/checkpoints/step-4/COMPLETE && ! grep -q hmac $tmp/ok/checkpoints/step-4/COMPLETE && grep -q '^manifest_hmac_sha256 [0-9a-f]\{64\}$' $tmp/sec/checkpoints/step-4/COMPLETE"
fresh sec sec-resume
run --steps 6 --set secret_file="$tmp/secret" --out "$tmp/sec-resume" --resume >"$tmp/o" 2>"$tmp/e"
check "honest checkpoint with a secret: --resume exits 0" "[ $? -eq 0 ] || tail -3 $tmp/e"

# --- tampering without the secret
S=checkpoints/step-4
fresh ok drop; "$T" "$tmp/drop/$S" drop-entry
all3 drop-entry "manifest.json: files: no entry for stage-0.safetensors" "$tmp/drop"
fresh ok layers; "$T" "$tmp/layers/$S" n-layers
all3 n-layers "manifest.json: stages.0.units.*not a unit of the model.*n_layers 1" "$tmp/layers"
fresh ok step; "$T" "$tmp/step/$S" step
all3 step "manifest.json: step 9, but the checkpoint's directory is step-4" "$tmp/step"
fresh ok step2; "$T" "$tmp/step2/$S" step; mv "$tmp/step2/$S" "$tmp/step2/checkpoints/step-9"; echo step-9 >"$tmp/step2/checkpoints/latest"
all3 step-renamed "stage-0.safetensors: __metadata__.step is \"4\", manifest.json's step is 9" "$tmp/step2"
fresh ok tr; "$T" "$tmp/tr/$S" transpose
all3 transposed "stage-0.safetensors: tensor model.embed_tokens.weight has shape \[32, 256\], the model expects \[256, 32\]" "$tmp/tr"
fresh ok mo; "$T" "$tmp/mo/$S" manifest-only
all3 manifest-only "manifest.json: SHA-256 [0-9a-f]+, but COMPLETE's manifest_sha256 is" "$tmp/mo"
fresh ok extra; cp "$tmp/extra/$S/stage-0.safetensors" "$tmp/extra/$S/stage-1.safetensors"
all3 extra-shard "stage-1.safetensors: unexpected file in the checkpoint" "$tmp/extra"

# --- with a secret: forgeries recomputed without the key
fresh sec forge; "$T" "$tmp/forge/$S" forge
all3 forged "COMPLETE: manifest_hmac_sha256 does not match" "$tmp/forge" --secret-file "$tmp/secret"
fresh sec strip; "$T" "$tmp/strip/$S" strip-hmac
all3 hmac-stripped "COMPLETE: no manifest_hmac_sha256, but this run has a secret" "$tmp/strip" --secret-file "$tmp/secret"

# --- a hostile checkpoints/latest says what it is
L="$tmp/lat/checkpoints/latest"
fresh ok lat; printf '../../etc\n' >"$L"
all3 latest-outside "latest: names \"../../etc\", a path outside" "$tmp/lat"
fresh ok lat; printf '\x01garbage\xff\n' >"$L"
all3 latest-garbage "latest: \"\?garbage\?\" is not a step directory name" "$tmp/lat"
fresh ok lat; rm "$L"; ln -s step-4 "$L"
all3 latest-symlink "latest: is a symbolic link" "$tmp/lat"
fresh ok lat; head -c 5000 /dev/zero | tr '\0' 'x' >"$L"
all3 latest-too-long "latest: 5000 bytes, too long" "$tmp/lat"
fresh ok lat; echo step-8 >"$L"
all3 latest-missing-step "latest: names step-8, which does not exist" "$tmp/lat"
exit $fail
