#!/usr/bin/env python3
"""Deterministic filler for a release: MB MiB of files under DIR, for bench/rebuild_bench.sh.

    python3 bench/release_data.py DIR MB [SEED]

The same arguments always write the same bytes (random.Random(SEED), default 15). The content
compresses about as a release does (BEAM files and shared objects: about 2.2x with gzip -6, 2.5x with zstd -3):
each 4 KiB block is, with probability 1/10, random bytes, else text of words drawn from a
vocabulary of 2,000 made-up words, so neither codec finds long repeats across files. File sizes
mix many small files with a few large ones, as lib/*/ebin and priv/ do: 70% of 8-96 KiB, 25% of
96 KiB-1 MiB, 5% of 1-8 MiB. Prints the number of files and bytes written.
"""

import os
import random
import sys

BLOCK = 4096


def vocabulary(rng):
    letters = "abcdefghijklmnopqrstuvwxyz_"
    return [
        "".join(rng.choice(letters) for _ in range(rng.randint(2, 12))).encode()
        for _ in range(2000)
    ]


def text_block(rng, words):
    # About BLOCK bytes of words (average ~8 bytes with the separator), cut to BLOCK.
    picked = rng.choices(words, k=BLOCK // 6)
    return b" ".join(picked)[:BLOCK].ljust(BLOCK, b"\n")


def content(rng, words, size):
    blocks = []
    for _ in range((size + BLOCK - 1) // BLOCK):
        if rng.random() < 0.10:
            blocks.append(rng.randbytes(BLOCK))
        else:
            blocks.append(text_block(rng, words))
    return b"".join(blocks)[:size]


def file_size(rng):
    r = rng.random()
    if r < 0.70:
        return rng.randint(8 << 10, 96 << 10)
    if r < 0.95:
        return rng.randint(96 << 10, 1 << 20)
    return rng.randint(1 << 20, 8 << 20)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    out, total = sys.argv[1], int(sys.argv[2]) << 20
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) == 4 else 15)
    words = vocabulary(rng)
    written = files = 0
    while written < total:
        size = min(file_size(rng), total - written)
        # 100 files a directory, as ebin/ and priv/ hold many.
        path = os.path.join(out, "d%03d" % (files // 100), "f%05d.bin" % files)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content(rng, words, size))
        written += size
        files += 1
    print(f"{files} files, {written} bytes")


if __name__ == "__main__":
    main()
