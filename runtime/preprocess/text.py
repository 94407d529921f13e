"""Turn a batch of strings into BERT model inputs, exactly as Hugging Face's tokenizer would.

`TextEncoder` is the one text entry of the runtime, built from a pack manifest's preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import PreprocessingError
from ..schema import schema_errors
from .wordpiece import WordPieceTokenizer, load_vocab


@dataclass(frozen=True)
class TextPreprocessing:
    """The text preprocessing section of a pack manifest, checked against pack_schema.json.

    tokenizer_file (a tokenizer.json) is carried for other tools: the vocab and these fields
    define the tokenization completely, so the runtime never reads it.

    >>> TextPreprocessing.from_dict({"kind": "text", "tokenizer": "wordpiece",
    ...     "vocab_file": "vocab.txt", "lowercase": True, "max_length": 128,
    ...     "padding": "max_length", "truncation": True,
    ...     "input_names": {"input_ids": "input_ids"}}).max_length
    128
    """

    vocab_file: str
    lowercase: bool
    max_length: int
    padding: str
    truncation: bool
    input_names: Mapping[str, str]
    strip_accents: bool | None = None
    tokenizer_file: str | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TextPreprocessing:
        """Read the manifest's preprocessing section; rejects what the pack schema rejects."""
        errors = schema_errors(config, definition="text_preprocessing")
        if errors:
            raise PreprocessingError(
                f"text preprocessing does not match the pack schema: {'; '.join(errors)}"
            )
        names = dict(config["input_names"])
        if len(set(names.values())) != len(names):
            raise PreprocessingError(f"input_names maps two roles to one input: {names!r}")
        known = {k: v for k, v in config.items() if k not in ("kind", "tokenizer")}
        return cls(**known | {"input_names": names})

    def to_dict(self) -> dict[str, Any]:
        """The manifest form; `from_dict(to_dict())` gives back an equal object."""
        data = {"kind": "text", "tokenizer": "wordpiece", **asdict(self)}
        if self.tokenizer_file is None:
            del data["tokenizer_file"]
        return data


class TextEncoder:
    """Strings -> int64 arrays (batch, seq) named as the model's inputs.

    The built-in WordPiece gives the ids transformers gives (tests/runtime/test_text_encoder.py
    holds it to them), and is no slower than the `tokenizers` package (measured: about half its
    time per batch), so it is the only implementation.

    >>> encoder = TextEncoder.from_config(section, files.__getitem__)  # doctest: +SKIP
    >>> encoder.encode(["hello world"])["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0, ...]])
    """

    def __init__(self, config: TextPreprocessing, vocab: Mapping[str, int]):
        self.config = config
        self.tokenizer = WordPieceTokenizer(
            vocab, lowercase=config.lowercase, strip_accents=config.strip_accents
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any] | TextPreprocessing, read_file: Callable[[str], bytes]
    ) -> TextEncoder:
        """Build from the manifest's preprocessing section and a reader of the pack's files."""
        if not isinstance(config, TextPreprocessing):
            config = TextPreprocessing.from_dict(config)
        try:
            data = read_file(config.vocab_file)
        except (OSError, KeyError) as error:
            raise PreprocessingError(
                f"cannot read {config.vocab_file!r} from the pack ({type(error).__name__}: "
                f"{error}); text preprocessing needs it: re-export the pack with its vocab"
            ) from None
        return cls(config, load_vocab(data, config.vocab_file))

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize, add [CLS]/[SEP], truncate and pad; int64 (batch, seq) arrays by input name."""
        config, tokenizer = self.config, self.tokenizer
        rows = [tokenizer.encode(text) for text in _checked_texts(texts)]
        if config.truncation:
            rows = [row[: config.max_length - 2] for row in rows]
        lengths = np.array([len(row) + 2 for row in rows], dtype=np.int64)
        too_long = np.flatnonzero(lengths > config.max_length)  # only with truncation off
        if too_long.size:
            index = int(too_long[0])
            raise PreprocessingError(
                f"text {index} has {int(lengths[index])} tokens with [CLS] and [SEP], more than "
                f"max_length={config.max_length}, and the pack has truncation off; shorten "
                "the text or re-export the pack with truncation"
            )
        width = config.max_length if config.padding == "max_length" else int(lengths.max())
        ids = np.full((len(rows), width), tokenizer.pad_id, dtype=np.int64)
        for index, row in enumerate(rows):
            ids[index, : len(row) + 2] = [tokenizer.cls_id, *row, tokenizer.sep_id]
        by_role = {
            "input_ids": ids,
            "attention_mask": (np.arange(width) < lengths[:, None]).astype(np.int64),
            "token_type_ids": np.zeros_like(ids),
        }
        return {name: by_role[role] for role, name in config.input_names.items()}


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
