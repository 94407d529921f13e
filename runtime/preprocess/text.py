"""BERT text preprocessing with the standard library and numpy: strings -> model inputs.

`load_vocab` and `WordPieceTokenizer` give exactly the ids of Hugging Face's tokenizers without
that package; `TextEncoder`, the entry, builds them from a pack manifest's preprocessing section.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PreprocessingError
from ..schema import schema_errors

# Special tokens Hugging Face's BertWordPieceTokenizer registers when they are in the vocab; they
# are matched in the raw input, so "[SEP]" typed in a text becomes the [SEP] id, not five pieces.
SPECIAL_TOKENS = ("[UNK]", "[SEP]", "[CLS]", "[PAD]", "[MASK]")
REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]")

PREFIX = "##"  # marks a piece that continues a word
MAX_WORD_CHARS = 100  # a longer word is one [UNK]
_CACHE_SIZE = 100_000  # words; the working set of real text is far smaller


def load_vocab(data: bytes | str, source: str = "vocab.txt") -> dict[str, int]:
    """Parse a BERT vocab.txt (one token per line, id = line number) into a token -> id dict.

    >>> load_vocab(b"[PAD]\\nhello\\n##s\\n")
    {'[PAD]': 0, 'hello': 1, '##s': 2}
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as error:
        raise PreprocessingError(
            f"{source} is not UTF-8 text ({error}); expected a BERT vocab, one token per line"
        ) from None
    # split("\n"), not splitlines(): tokens may contain \x85 or \u2028, which splitlines cuts.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    # Like tokenizers' WordPiece.read_file: trailing whitespace is trimmed, a later duplicate wins.
    vocab = {line.rstrip(_WHITESPACE_CHARS): index for index, line in enumerate(lines)}
    if not vocab:
        raise PreprocessingError(f"{source} is empty; expected one WordPiece token per line")
    return vocab


class WordPieceTokenizer:
    """BertNormalizer + BertPreTokenizer + WordPiece, as in Hugging Face `tokenizers`.

    `encode` returns ids without [CLS]/[SEP]; `TextEncoder` adds them, truncates and pads.

    >>> tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##able", "!"]
    >>> WordPieceTokenizer({t: i for i, t in enumerate(tokens)}).tokenize("UNABLE!! Ünable")
    ['un', '##able', '!', '!', 'un', '##able']
    """

    def __init__(
        self, vocab: Mapping[str, int], *, lowercase: bool = True, strip_accents: bool | None = None
    ):
        if missing := [token for token in REQUIRED_TOKENS if token not in vocab]:
            raise PreprocessingError(
                f"the vocab lacks the special token(s) {missing}; a BERT vocab needs "
                f"{list(REQUIRED_TOKENS)}"
            )
        self.vocab = dict(vocab)
        self.lowercase = lowercase
        # None follows lowercase, as in BertNormalizer (uncased models strip accents).
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            self.vocab[t] for t in REQUIRED_TOKENS
        )
        self._special = {token: self.vocab[token] for token in SPECIAL_TOKENS if token in vocab}
        # Longest first, so that at one position the longest special token wins.
        alternatives = sorted(self._special, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        # No vocab entry is longer, so the greedy match need not try longer substrings.
        self._longest = max(map(len, self.vocab))
        # Per instance, so the cache dies with the tokenizer; bounded for long-running devices.
        self._pieces = lru_cache(maxsize=_CACHE_SIZE)(self._wordpiece)
        self._id_to_token: dict[int, str] | None = None

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without [CLS]/[SEP] and without truncation."""
        if "[" not in text:
            return self._encode_ordinary(text)
        ids: list[int] = []
        # split() with a capturing group alternates ordinary text and special tokens.
        for index, part in enumerate(self._special_re.split(text)):
            if index % 2:
                ids.append(self._special[part])
            elif part:
                ids.extend(self._encode_ordinary(part))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Token strings of one text (for inspection; `encode` is the fast path)."""
        if self._id_to_token is None:
            self._id_to_token = {index: token for token, index in self.vocab.items()}
        return [self._id_to_token[index] for index in self.encode(text)]

    def normalize(self, text: str) -> str:
        """BertNormalizer: clean text, space out CJK, strip accents, lowercase (in that order)."""
        text = _WHITESPACE_RE.sub(" ", _CONTROL_RE.sub("", text))
        if text.isascii():
            return text.lower() if self.lowercase else text
        text = _CJK_RE.sub(r" \g<0> ", text)
        if self.strip_accents:
            text = _NONSPACING_MARK_RE.sub("", _nfd(text))
        if self.lowercase:
            # tokenizers lowercases char by char: no final-sigma rule (Python turns a word-final
            # Σ into ς), and Rust's newer Unicode tables know a few more capitals.
            text = text.replace("Σ", "σ").lower()
            if _LOWERCASE_SINCE_PYTHON_UNICODE_RE.search(text):
                text = text.translate(_LOWERCASE_SINCE_PYTHON_UNICODE)
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        """Normalized words: split on whitespace, each punctuation character its own word."""
        return _WORD_RE.findall(self.normalize(text))

    def _encode_ordinary(self, text: str) -> list[int]:
        pieces = self._pieces
        return [index for word in self.pre_tokenize(text) for index in pieces(word)]

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first split; a word with any unmatched rest is one [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return (self.unk_id,)
        vocab, longest, length = self.vocab, self._longest, len(word)
        ids = []
        start, prefix = 0, ""
        while start < length:
            end = min(length, start + longest)
            while end > start:
                index = vocab.get(prefix + word[start:end])
                if index is not None:
                    break
                end -= 1
            else:
                return (self.unk_id,)
            ids.append(index)
            start, prefix = end, PREFIX
        return tuple(ids)


class TextEncoder:
    """Strings -> int64 arrays (batch, seq) named as the model's inputs, from the manifest's
    text preprocessing section (checked against pack_schema.json) and the pack's vocab.

    The built-in WordPiece gives the ids transformers gives (tests/runtime/test_text_encoder.py
    holds it to them) within 0.1x-1.3x of the `tokenizers` package's time on the same batches
    (experiments/wordpiece_vs_tokenizers.py), so it is the only implementation. The section's
    tokenizer_file (a tokenizer.json) is carried for other tools and never read.

    >>> encoder = TextEncoder(section, files.__getitem__)  # doctest: +SKIP
    >>> encoder.encode(["hello world"])["input_ids"]  # doctest: +SKIP
    array([[ 101, 7592, 2088,  102,    0, ...]])
    """

    def __init__(self, config: Mapping[str, Any], read_file: Callable[[str], bytes]):
        """Check the section, read its vocab_file with `read_file` (pack path -> bytes)."""
        if errors := schema_errors(config, definition="text_preprocessing"):
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
        self.config = config
        self.tokenizer = WordPieceTokenizer(
            load_vocab(data, config["vocab_file"]),
            lowercase=config["lowercase"],
            strip_accents=config.get("strip_accents"),
        )

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
        if bad := re.search("[\ud800-\udfff]", text):
            raise PreprocessingError(
                f"texts[{index}] holds a lone surrogate {bad.group()!a} at {bad.start()}; "
                "expected Unicode text (decode bytes with errors='replace')"
            )
    return list(texts)


def _nfd(text: str) -> str:
    """NFD as tokenizers computes it: characters it does not know are left as they are."""
    if _NFD_UNKNOWN_RE.search(text) is None:
        return unicodedata.normalize("NFD", text)
    # To tokenizers they are starters: canonical reordering never crosses them, so the runs
    # between them decompose independently. split() puts them at the odd indexes.
    parts = _NFD_UNKNOWN_RE.split(text)
    parts[::2] = [unicodedata.normalize("NFD", part) for part in parts[::2]]
    return "".join(parts)


def _code_ranges(table: str) -> list[tuple[int, int]]:
    """(first, last) pairs of one table's hex code points and ranges ("0041-005A 00AA")."""
    pairs = [item.partition("-") for line in _TABLES[table]["ranges"] for item in line.split()]
    return [(int(low, 16), int(high or low, 16)) for low, _, high in pairs]


def _char_class(table: str) -> str:
    """The body of a regex character class matching the code points of one table."""
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in _code_ranges(table))


# tokenizers' own character classes, as a data file beside this module (its "about" says why
# they are not Python's unicodedata); read directly: importlib.resources would cost the import.
_TABLES = json.loads(Path(__file__).with_name("unicode_tables.json").read_text("utf-8"))
_LOWERCASE_SINCE_PYTHON_UNICODE = {
    code: int(lower, 16) + code - int(first, 16)
    for first, last, lower in _TABLES["lowercase_since_python_unicode"]["runs"]
    for code in range(int(first, 16), int(last, 16) + 1)
}
_LOWERCASE_SINCE_PYTHON_UNICODE_RE = re.compile(
    "[" + "".join(map(chr, _LOWERCASE_SINCE_PYTHON_UNICODE)) + "]"
)
_WHITESPACE_CHARS = "".join(
    chr(code) for low, high in _code_ranges("whitespace") for code in range(low, high + 1)
)
_CONTROL_RE = re.compile(f"[{_char_class('control')}]")
_WHITESPACE_RE = re.compile(f"[{_char_class('whitespace')}]")
_CJK_RE = re.compile(f"[{_char_class('cjk')}]")
_NFD_UNKNOWN_RE = re.compile(f"([{_char_class('nfd_unknown')}]+)")
_NONSPACING_MARK_RE = re.compile(f"[{_char_class('nonspacing_marks')}]+")
_PUNCTUATION = _char_class("punctuation")
_WORD_RE = re.compile(f"[{_PUNCTUATION}]|[^{_PUNCTUATION}{_char_class('whitespace')}]+")
