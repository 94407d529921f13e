"""Turn a batch of strings into BERT model inputs, exactly as Hugging Face's tokenizer would.

`TextEncoder` is the one text entry of the runtime, built from a pack manifest's preprocessing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import PreprocessingError
from .wordpiece import SPECIAL_TOKENS, WordPieceTokenizer, load_vocab

ROLES = ("input_ids", "attention_mask", "token_type_ids")
PADDINGS = ("max_length", "longest")
IMPLEMENTATIONS = ("auto", "tokenizers", "builtin")

_REQUIRED_KEYS = (
    "kind",
    "tokenizer",
    "vocab_file",
    "lowercase",
    "max_length",
    "padding",
    "truncation",
    "input_names",
)
_OPTIONAL_KEYS = ("tokenizer_file", "strip_accents")


@dataclass(frozen=True)
class TextPreprocessing:
    """The text preprocessing section of a pack manifest, validated.

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

    def __post_init__(self) -> None:
        for name in ("lowercase", "truncation"):
            if not isinstance(getattr(self, name), bool):
                raise PreprocessingError(f"text preprocessing {name!r} must be true or false")
        if self.strip_accents is not None and not isinstance(self.strip_accents, bool):
            raise PreprocessingError(
                "text preprocessing 'strip_accents' must be true, false or null"
            )
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool):
            raise PreprocessingError(f"max_length must be an integer, got {self.max_length!r}")
        if self.max_length < 2:
            raise PreprocessingError(
                f"max_length is {self.max_length}; it must be at least 2 to hold [CLS] and [SEP]"
            )
        if self.padding not in PADDINGS:
            raise PreprocessingError(f"padding is {self.padding!r}; expected one of {PADDINGS}")
        if not isinstance(self.vocab_file, str) or not self.vocab_file:
            raise PreprocessingError("text preprocessing needs 'vocab_file', the pack's vocab.txt")
        if self.tokenizer_file is not None and not isinstance(self.tokenizer_file, str):
            raise PreprocessingError("'tokenizer_file' must be a path inside the pack or absent")
        names = self.input_names
        if not isinstance(names, Mapping) or "input_ids" not in names:
            raise PreprocessingError(
                f"input_names must map roles {ROLES} to model input names and include "
                f"'input_ids'; got {names!r}"
            )
        unknown = sorted(set(names) - set(ROLES))
        if unknown:
            raise PreprocessingError(f"unknown input_names role(s) {unknown}; expected {ROLES}")
        if not all(isinstance(n, str) and n for n in names.values()):
            raise PreprocessingError(f"input_names values must be non-empty strings: {names!r}")
        if len(set(names.values())) != len(names):
            raise PreprocessingError(f"input_names maps two roles to one input: {names!r}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TextPreprocessing:
        """Read the manifest's preprocessing section; rejects keys this runtime does not know."""
        if not isinstance(config, Mapping):
            raise PreprocessingError(f"text preprocessing must be an object, got {config!r}")
        missing = [key for key in _REQUIRED_KEYS if key not in config]
        if missing:
            raise PreprocessingError(f"text preprocessing lacks {missing}; re-export the pack")
        unknown = sorted(set(config) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise PreprocessingError(
                f"text preprocessing has unknown key(s) {unknown}; this runtime reads "
                f"{sorted(_REQUIRED_KEYS + _OPTIONAL_KEYS)} (a newer edgepack may read the pack)"
            )
        if config["kind"] != "text" or config["tokenizer"] != "wordpiece":
            raise PreprocessingError(
                f"text preprocessing kind={config['kind']!r} tokenizer={config['tokenizer']!r}; "
                "this runtime supports kind='text' with tokenizer='wordpiece'"
            )
        return cls(
            vocab_file=config["vocab_file"],
            lowercase=config["lowercase"],
            max_length=config["max_length"],
            padding=config["padding"],
            truncation=config["truncation"],
            input_names=dict(config["input_names"]),
            strip_accents=config.get("strip_accents"),
            tokenizer_file=config.get("tokenizer_file"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest form; `from_dict(to_dict())` gives back an equal object."""
        data: dict[str, Any] = {
            "kind": "text",
            "tokenizer": "wordpiece",
            "vocab_file": self.vocab_file,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "max_length": self.max_length,
            "padding": self.padding,
            "truncation": self.truncation,
            "input_names": dict(self.input_names),
        }
        if self.tokenizer_file is not None:
            data["tokenizer_file"] = self.tokenizer_file
        return data


class TextEncoder:
    """Strings -> int64 arrays (batch, seq) named as the model's inputs.

    Uses Hugging Face `tokenizers` when it is installed, else the pure-Python WordPiece; both
    give the ids transformers gives (tests/runtime/test_text_encoder.py holds them to it).

    >>> encoder = TextEncoder.from_config(section, files.__getitem__)  # doctest: +SKIP
    >>> encoder.encode(["hello world"])["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0, ...]])
    """

    def __init__(
        self,
        config: TextPreprocessing,
        vocab: Mapping[str, int],
        tokenizer_json: str | None = None,
        prefer: str = "auto",
    ):
        if prefer not in IMPLEMENTATIONS:
            raise PreprocessingError(f"prefer is {prefer!r}; expected one of {IMPLEMENTATIONS}")
        self.config = config
        # Built even when tokenizers runs, so that both validate the vocab the same way.
        self._builtin = WordPieceTokenizer(
            vocab, lowercase=config.lowercase, strip_accents=config.strip_accents
        )
        if tokenizer_json is not None:
            _check_tokenizer_json(tokenizer_json, config, vocab)
        self._fast = (
            None if prefer == "builtin" else _load_tokenizers(config, vocab, tokenizer_json)
        )
        if self._fast is None and prefer == "tokenizers":
            raise PreprocessingError(
                "prefer='tokenizers' but the tokenizers package is not installed; "
                "pip install tokenizers, or use prefer='auto'"
            )
        self.implementation = "builtin" if self._fast is None else "tokenizers"

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | TextPreprocessing,
        read_file: Callable[[str], bytes],
        prefer: str = "auto",
    ) -> TextEncoder:
        """Build from the manifest's preprocessing section and a reader of the pack's files.

        `prefer` is "auto" (tokenizers when importable), "tokenizers" or "builtin".
        """
        if not isinstance(config, TextPreprocessing):
            config = TextPreprocessing.from_dict(config)
        vocab = load_vocab(_read(read_file, config.vocab_file), config.vocab_file)
        tokenizer_json = None
        if config.tokenizer_file is not None:
            data = _read(read_file, config.tokenizer_file)
            try:
                tokenizer_json = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise PreprocessingError(
                    f"{config.tokenizer_file} is not UTF-8 ({error}); expected tokenizer JSON"
                ) from None
        return cls(config, vocab, tokenizer_json, prefer)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize, add [CLS]/[SEP], truncate and pad; int64 (batch, seq) arrays by input name."""
        texts = _checked_texts(texts)
        if self._fast is None:
            ids, mask, type_ids = self._encode_builtin(texts)
        else:
            ids, mask, type_ids = self._encode_tokenizers(texts)
        by_role = {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}
        return {name: by_role[role] for role, name in self.config.input_names.items()}

    def _encode_builtin(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        config, tokenizer = self.config, self._builtin
        rows = [tokenizer.encode(text) for text in texts]
        if config.truncation:
            rows = [row[: config.max_length - 2] for row in rows]
        lengths = np.array([len(row) + 2 for row in rows], dtype=np.int64)
        self._check_fits(lengths)
        width = config.max_length if config.padding == "max_length" else int(lengths.max())
        ids = np.full((len(rows), width), tokenizer.pad_id, dtype=np.int64)
        for index, row in enumerate(rows):
            ids[index, : len(row) + 2] = [tokenizer.cls_id, *row, tokenizer.sep_id]
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        return ids, mask, np.zeros_like(ids)

    def _encode_tokenizers(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        encodings = self._fast.encode_batch(texts)
        if not self.config.truncation:
            self._check_fits(np.array([sum(e.attention_mask) for e in encodings]))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        type_ids = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return ids, mask, type_ids

    def _check_fits(self, lengths: np.ndarray) -> None:
        # Can only fail with truncation off: the model was exported for max_length tokens.
        too_long = np.flatnonzero(lengths > self.config.max_length)
        if too_long.size:
            index = int(too_long[0])
            raise PreprocessingError(
                f"text {index} has {int(lengths[index])} tokens with [CLS] and [SEP], more than "
                f"max_length={self.config.max_length}, and the pack has truncation off; shorten "
                "the text or re-export the pack with truncation"
            )


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


def _read(read_file: Callable[[str], bytes], path: str) -> bytes:
    try:
        data = read_file(path)
    except (OSError, KeyError) as error:
        raise PreprocessingError(
            f"cannot read {path!r} from the pack ({type(error).__name__}: {error}); text "
            "preprocessing needs it: re-export the pack with its tokenizer files"
        ) from None
    if not isinstance(data, bytes):
        raise PreprocessingError(f"reading {path!r} gave {type(data).__name__}, expected bytes")
    return data


def _load_tokenizers(
    config: TextPreprocessing, vocab: Mapping[str, int], tokenizer_json: str | None
) -> Any:
    """A configured `tokenizers` tokenizer, or None when the package is not installed."""
    try:
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer
    except ImportError:
        return None
    if tokenizer_json is None:
        tokenizer = BertWordPieceTokenizer(
            dict(vocab), lowercase=config.lowercase, strip_accents=config.strip_accents
        )
    else:
        try:
            tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as error:  # tokenizers raises a bare Exception for a malformed file
            raise PreprocessingError(
                f"tokenizers cannot load {config.tokenizer_file!r}: {error}"
            ) from None
    # The file's own truncation and padding are replaced: the manifest decides.
    if config.truncation:
        tokenizer.enable_truncation(config.max_length)
    else:
        tokenizer.no_truncation()
    length = config.max_length if config.padding == "max_length" else None
    tokenizer.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]", length=length)
    return tokenizer


def _check_tokenizer_json(text: str, config: TextPreprocessing, vocab: Mapping[str, int]) -> None:
    """Reject a tokenizer.json that would tokenize differently from vocab_file + the manifest.

    Both implementations run this check, so a pack behaves the same with or without tokenizers.
    """
    source = config.tokenizer_file
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise PreprocessingError(f"{source} is not valid JSON ({error})") from None
    model = spec.get("model") or {}
    normalizer = spec.get("normalizer") or {}
    post = spec.get("post_processor") or {}
    if post.get("type") == "BertProcessing":
        template = [post.get("cls", [None])[0], "$A", post.get("sep", [None])[0]]
    else:
        template = [
            item["SpecialToken"]["id"] if "SpecialToken" in item else "$A"
            for item in post.get("single", [])
        ]
    strip = normalizer.get("strip_accents")
    found = {
        "model": model.get("type"),
        "unk_token": model.get("unk_token"),
        "continuing_subword_prefix": model.get("continuing_subword_prefix"),
        "max_input_chars_per_word": model.get("max_input_chars_per_word"),
        "normalizer": normalizer.get("type"),
        "clean_text": normalizer.get("clean_text"),
        "handle_chinese_chars": normalizer.get("handle_chinese_chars"),
        "lowercase": normalizer.get("lowercase"),
        "strip_accents": normalizer.get("lowercase") if strip is None else strip,
        "pre_tokenizer": (spec.get("pre_tokenizer") or {}).get("type"),
        "single template": template,
    }
    expected = {
        "model": "WordPiece",
        "unk_token": "[UNK]",
        "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "normalizer": "BertNormalizer",
        "clean_text": True,
        "handle_chinese_chars": True,
        "lowercase": config.lowercase,
        "strip_accents": config.lowercase if config.strip_accents is None else config.strip_accents,
        "pre_tokenizer": "BertPreTokenizer",
        "single template": ["[CLS]", "$A", "[SEP]"],
    }
    problems = [
        f"{key} is {found[key]!r}, expected {value!r}"
        for key, value in expected.items()
        if found[key] != value
    ]
    if model.get("vocab") != dict(vocab):
        problems.append(f"its vocab differs from {config.vocab_file}")
    added = spec.get("added_tokens") or []
    extra = [token.get("content") for token in added if token.get("content") not in SPECIAL_TOKENS]
    if extra:
        problems.append(f"it adds tokens {extra} beyond {list(SPECIAL_TOKENS)}")
    # The built-in tokenizer matches special tokens exactly as written, nothing around them.
    flags = ("lstrip", "rstrip", "single_word", "normalized")
    flagged = [token.get("content") for token in added if any(token.get(f) for f in flags)]
    if flagged:
        problems.append(f"added tokens {flagged} set one of {list(flags)}")
    if problems:
        raise PreprocessingError(
            f"{source} does not match the pack's text preprocessing: {'; '.join(problems)}. "
            "The two tokenizer implementations would give different ids; re-export the pack"
        )
