#!/usr/bin/env python3
"""bpe_ref.py — an independent, pure-Python reference of Hugging Face's byte-level
BPE encoding (tokenizers' ByteLevel pre-tokenizer with use_regex=true + BPE model),
written from GPT-2's encoder.py, to check pipetrain's C encoder without the
`tokenizers` package (not in Debian, no network here).

usage: bpe_ref.py TOKENIZER.json TEXTFILE IDS.bin   -> exit 0 when the ids agree
       bpe_ref.py TOKENIZER.json TEXTFILE           -> prints the ids

The regex is GPT-2's, run by the `regex` module (Debian: python3-regex), whose
\\p{L} / \\p{N} / \\s are Unicode's. Without `regex` it falls back to `re` with
[^\\W\\d_] for letters and \\d for numbers (an approximation that agrees on ASCII);
it says so on stderr. Special (added) tokens are cut out first, as HF does.
"""
import json
import struct
import sys

try:
    import regex as re_mod
    PAT = re_mod.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
except ImportError:
    import re as re_mod
    print("bpe_ref.py: no `regex` module: using re with [^\\W\\d_] for \\p{L}", file=sys.stderr)
    PAT = re_mod.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def load(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    model = doc["model"]
    vocab = model["vocab"]
    ranks = {}
    for i, m in enumerate(model["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks.setdefault((a, b), i)
    specials = sorted((t["content"] for t in doc.get("added_tokens") or []), key=len, reverse=True)
    return vocab, ranks, specials


def bpe(word, ranks, cache):
    """GPT-2's encoder.py bpe(): merge the lowest-ranked pair, all occurrences left to right."""
    if word in cache:
        return cache[word]
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1]), 1 << 62), i) for i in range(len(parts) - 1)]
        best = min(pairs)[0]
        if best == 1 << 62:
            break
        a, b = next((parts[i], parts[i + 1]) for r, i in pairs if r == best)
        out, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(parts[i])
                i += 1
        parts = out
    cache[word] = parts
    return parts


def encode(text, vocab, ranks, specials):
    b2u = bytes_to_unicode()
    ids, cache = [], {}
    pieces = [text]
    if specials:
        pat = re_mod.compile("(" + "|".join(re_mod.escape(s) for s in specials) + ")")
        pieces = pat.split(text)
    for k, piece in enumerate(pieces):
        if k % 2 == 1 and specials:
            ids.append(vocab[piece])
            continue
        for w in PAT.findall(piece):
            sym = "".join(b2u[c] for c in w.encode("utf-8"))
            ids.extend(vocab[t] for t in bpe(sym, ranks, cache))
    return ids


def main():
    vocab, ranks, specials = load(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8", newline="") as f:  # keep \r\n as it is
        text = f.read()
    ids = encode(text, vocab, ranks, specials)
    if len(sys.argv) < 4:
        print(" ".join(map(str, ids)))
        return 0
    raw = open(sys.argv[3], "rb").read()
    width = 4 if sys.argv[3].endswith(".u32.bin") else 2
    got = list(struct.unpack("<%d%s" % (len(raw) // width, "I" if width == 4 else "H"), raw))
    if got == ids:
        print("bpe_ref.py: %d ids agree" % len(ids))
        return 0
    first = next((i for i in range(min(len(got), len(ids))) if got[i] != ids[i]), min(len(got), len(ids)))
    print("bpe_ref.py: MISMATCH: %d ids from pipetrain, %d from the reference; first difference at %d: "
          "pipetrain %s, reference %s" % (len(got), len(ids), first, got[first:first + 8], ids[first:first + 8]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
