#!/usr/bin/env python3
"""Writes the deliberately broken KeyKa v0 files beside this script.

Each is the spec's a/b/c example (../example-abc.keyka) with one defect, except
deep-chain, which is built from scratch. Layout of the example, as file offsets:
  0..7 magic · 8..11 root ref (15) · 12..22 leaf 'a' · 23..41 branch 'b'
  (value 23..30, left 31..34 = -4, right 35..38 = -34, len 39..40, key 41)
  · 42..52 leaf 'c'.
Run it again only if the set of broken files changes; the files are committed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ABC = open(os.path.join(HERE, "..", "example-abc.keyka"), "rb").read()
assert len(ABC) == 53


def patched(offset, data):
    b = bytearray(ABC)
    b[offset:offset + len(data)] = data
    return bytes(b)


def i32(v):
    return struct.pack("<i", v)


def deep_chain(n=64):
    """n branches, each with key 'z', whose left reference names the one
    before it: a well-formed-looking left spine far deeper than a file of
    this size can hold."""
    tree = bytearray(i32(0))
    offsets = []
    for i in range(n):
        offsets.append(len(tree))
        left = offsets[i - 1] if i > 0 else 0
        tree += struct.pack("<QiiH", i, left, 0, 1) + b"z"
    tree[0:4] = i32(offsets[-1])
    return ABC[:8] + bytes(tree)


FILES = {
    "bad-magic.keyka": patched(1, b"k"),
    "short-header.keyka": ABC[:10],
    "root-outside.keyka": patched(8, i32(1000)),
    "offset-outside.keyka": patched(35, i32(-3400)),
    "cycle.keyka": patched(31, i32(15)),
    "truncated.keyka": ABC[:50],
    "unsorted.keyka": patched(22, b"c")[:52] + b"a",
    "wrong-right.keyka": patched(35, i32(0)),
    "trailing-bytes.keyka": ABC + b"\0",
    "deep-chain.keyka": deep_chain(),
}

for name, data in FILES.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
