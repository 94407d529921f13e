"""BERT text preprocessing: strings -> model inputs, with Hugging Face `tokenizers` (the `text`
extra) set up from the pack's vocab and the manifest's text preprocessing section."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import PreprocessingError

REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]")
# What tokenizers' vocab reader trims from a line's end: Rust's White_Space, which lacks the
# \x1c-\x1f separators that Python's str.rstrip() would also take.
_RUST_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)


def load_vocab(data: bytes, source: str = "vocab.txt") -> dict[str, int]:
    """A BERT vocab.txt (one token per line, id = line number) as tokenizers reads one: trailing
    whitespace trimmed, a later duplicate wins.

    >>> load_vocab(b"[PAD]\\nhello\\n##s\\n")
    {'[PAD]': 0, 'hello': 1, '##s': 2}
    """
    try:
        lines = data.decode("utf-8").split("\n")  # not splitlines(): it also cuts at \x85
    except UnicodeDecodeError as error:
        raise PreprocessingError(
            f"{source} is not UTF-8 text ({error}); expected a BERT vocab, one token per line"
        ) from None
    if lines[-1] == "":
        lines.pop()
    vocab = {line.rstrip(_RUST_WHITESPACE): index for index, line in enumerate(lines)}
    if missing := [token for token in REQUIRED_TOKENS if token not in vocab]:
        raise PreprocessingError(
            f"{source} lacks the special token(s) {missing}; a BERT vocab needs "
            f"{list(REQUIRED_TOKENS)}"
        )
    return vocab


class TextEncoder:
    """Strings -> int64 (batch, seq) arrays named as the model's inputs, by tokenizers'
    BertWordPieceTokenizer: the ids transformers gives (tests/runtime/test_text_encoder.py).
    `config` is the schema-checked manifest section; its tokenizer_file is for other tools.

    >>> encoder = TextEncoder(section, files.__getitem__)  # doctest: +SKIP
    >>> encoder.encode(["hello world"])["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0, ...]])
    """

    def __init__(self, config: Mapping[str, Any], read_file: Callable[[str], bytes]):
        """Read the vocab_file with `read_file` (pack path -> bytes) and set the tokenizer up."""
        try:
            from tokenizers.implementations import BertWordPieceTokenizer
        except ImportError:
            raise PreprocessingError(
                "text packs need the tokenizers package: pip install 'edgepack[text]'"
            ) from None
        names = config["input_names"]
        if len(set(names.values())) != len(names):
            raise PreprocessingError(f"input_names maps two roles to one input: {names!r}")
        try:
            data = read_file(config["vocab_file"])
        except (OSError, KeyError) as error:
            raise PreprocessingError(
                f"cannot read {config['vocab_file']!r} from the pack ({type(error).__name__}: "
                f"{error}); text preprocessing needs it: re-export the pack with its vocab"
            ) from None
        vocab = load_vocab(data, config["vocab_file"])
        self.config, self.max_length = config, config["max_length"]
        self.tokenizer = BertWordPieceTokenizer(
            vocab, lowercase=config["lowercase"], strip_accents=config.get("strip_accents")
        )
        if config["truncation"]:
            self.tokenizer.enable_truncation(self.max_length)
        fixed = self.max_length if config["padding"] == "max_length" else None
        self.tokenizer.enable_padding(pad_id=vocab["[PAD]"], length=fixed)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize, add [CLS]/[SEP], truncate and pad; int64 (batch, seq) arrays by input name."""
        encodings = self.tokenizer.encode_batch(_checked_texts(texts))
        lengths = [sum(e.attention_mask) for e in encodings]  # without padding
        if max(lengths) > self.max_length:  # only with truncation off
            index = next(i for i, n in enumerate(lengths) if n > self.max_length)
            raise PreprocessingError(
                f"text {index} has {lengths[index]} tokens with [CLS] and [SEP], more than "
                f"max_length={self.max_length}, and the pack has truncation off; shorten the "
                "text or re-export the pack with truncation"
            )
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        by_role = {
            "input_ids": ids,
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.zeros_like(ids),
        }
        return {name: by_role[role] for role, name in self.config["input_names"].items()}


def _checked_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise PreprocessingError(
            f"encode() takes a list of strings, got {type(texts).__name__}; "
            "wrap a single text in a list"
        )
    if not texts:
        raise PreprocessingError("encode() got an empty list; expected at least one text")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise PreprocessingError(
                f"texts[{index}] is {type(text).__name__}; expected str (decode bytes first)"
            )
        if bad := re.search("[\ud800-\udfff]", text):
            raise PreprocessingError(
                f"texts[{index}] holds a lone surrogate {bad.group()!a} at {bad.start()}; "
                "expected Unicode text (decode bytes with errors='replace')"
            )
    return list(texts)
