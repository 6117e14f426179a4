#!/usr/bin/python3
"""Writes a seed corpus for fuzz_engine: the client side of every captured Postfix dialogue.

Usage: seed_corpus.py OUTPUT_DIR
"""
import json
import pathlib
import sys

TRANSCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "transcripts"


def main() -> int:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in sorted(TRANSCRIPTS.glob("postfix-3.7*/*.json")):
        for name, steps in json.loads(path.read_text()).items():
            sent = "".join(s for s, _ in steps if s and not s.startswith("<<"))
            (out / f"{path.parent.name}-{path.stem}-{name}").write_bytes(sent.encode("latin-1"))
            written += 1
    print(f"seed corpus: {written} inputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
