"""Turn a batch of strings into BERT model inputs, exactly as Hugging Face's tokenizer would.

`TextEncoder` is the one text entry of the runtime, built from a pack manifest's preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import PreprocessingError
from ..schema import schema_errors
from .wordpiece import WordPieceTokenizer, load_vocab


class TextEncoder:
    """Strings -> int64 arrays (batch, seq) named as the model's inputs, from the manifest's
    text preprocessing section (checked against pack_schema.json) and the pack's vocab.

    The built-in WordPiece gives the ids transformers gives (tests/runtime/test_text_encoder.py
    holds it to them) in about half the time the `tokenizers` package takes for the same
    batches, so it is the only implementation. The section's tokenizer_file (a tokenizer.json)
    is carried for other tools and never read: vocab and manifest define the tokenization.

    >>> encoder = TextEncoder.from_config(section, files.__getitem__)  # doctest: +SKIP
    >>> encoder.encode(["hello world"])["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0, ...]])
    """

    def __init__(self, config: Mapping[str, Any], vocab: Mapping[str, int]):
        self.config = config
        self.tokenizer = WordPieceTokenizer(
            vocab, lowercase=config["lowercase"], strip_accents=config.get("strip_accents")
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], read_file: Callable[[str], bytes]
    ) -> TextEncoder:
        """Check the section, read its vocab_file with `read_file` (pack path -> bytes), build."""
        errors = schema_errors(config, definition="text_preprocessing")
        if errors:
            raise PreprocessingError(
                f"text preprocessing does not match the pack schema: {'; '.join(errors)}"
            )
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
        return cls(config, load_vocab(data, config["vocab_file"]))

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize, add [CLS]/[SEP], truncate and pad; int64 (batch, seq) arrays by input name."""
        tokenizer, max_length = self.tokenizer, self.config["max_length"]
        rows = [tokenizer.encode(text) for text in _checked_texts(texts)]
        if self.config["truncation"]:
            rows = [row[: max_length - 2] for row in rows]
        lengths = np.array([len(row) + 2 for row in rows], dtype=np.int64)
        too_long = np.flatnonzero(lengths > max_length)  # only with truncation off
        if too_long.size:
            index = int(too_long[0])
            raise PreprocessingError(
                f"text {index} has {int(lengths[index])} tokens with [CLS] and [SEP], more than "
                f"max_length={max_length}, and the pack has truncation off; shorten the text "
                "or re-export the pack with truncation"
            )
        width = max_length if self.config["padding"] == "max_length" else int(lengths.max())
        ids = np.full((len(rows), width), tokenizer.pad_id, dtype=np.int64)
        for index, row in enumerate(rows):
            ids[index, : len(row) + 2] = [tokenizer.cls_id, *row, tokenizer.sep_id]
        by_role = {
            "input_ids": ids,
            "attention_mask": (np.arange(width) < lengths[:, None]).astype(np.int64),
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
    return list(texts)
