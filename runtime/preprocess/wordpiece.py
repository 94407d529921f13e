"""Pure-Python BERT WordPiece tokenizer giving exactly the ids of Hugging Face's tokenizers.

The fallback for devices without the `tokenizers` package; `text.TextEncoder` is the entry point.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from ..errors import PreprocessingError

# Special tokens Hugging Face's BertWordPieceTokenizer registers when they are in the vocab; they
# are matched in the raw input, so "[SEP]" typed in a text becomes the [SEP] id, not five pieces.
SPECIAL_TOKENS = ("[UNK]", "[SEP]", "[CLS]", "[PAD]", "[MASK]")
REQUIRED_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]")

# Bounds memory on a long-running device; the working set of words in real text is far smaller.
_CACHE_SIZE = 100_000


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
        self,
        vocab: Mapping[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
    ):
        missing = [token for token in REQUIRED_TOKENS if token not in vocab]
        if missing:
            raise PreprocessingError(
                f"the vocab lacks the special token(s) {missing}; a BERT vocab needs "
                f"{list(REQUIRED_TOKENS)}"
            )
        self.vocab = dict(vocab)
        self.lowercase = lowercase
        # None follows lowercase, as in BertNormalizer (uncased models strip accents).
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.pad_id = self.vocab["[PAD]"]
        self._special = {token: self.vocab[token] for token in SPECIAL_TOKENS if token in vocab}
        # Longest first, so that at one position the longest special token wins.
        alternatives = sorted(self._special, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        # No vocab entry is longer, so the greedy match need not try longer substrings.
        self._longest = max(map(len, self.vocab))
        self._cache: dict[str, tuple[int, ...]] = {}
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
        ids: list[int] = []
        cache = self._cache
        for word in _WORD_RE.findall(self.normalize(text)):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._wordpiece(word)
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[word] = pieces
            ids.extend(pieces)
        return ids

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first split; a word with any unmatched rest is one [UNK]."""
        if len(word) > self.max_input_chars_per_word:
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
            start, prefix = end, self.prefix
        return tuple(ids)


def _nfd(text: str) -> str:
    """NFD as tokenizers computes it: characters it does not know are left as they are."""
    if _NFD_UNKNOWN_RE.search(text) is None:
        return unicodedata.normalize("NFD", text)
    # To tokenizers they are starters: canonical reordering never crosses them, so the runs
    # between them decompose independently. split() puts them at the odd indexes.
    parts = _NFD_UNKNOWN_RE.split(text)
    parts[::2] = [unicodedata.normalize("NFD", part) for part in parts[::2]]
    return "".join(parts)


def _code_ranges(spec: str) -> list[tuple[int, int]]:
    """(first, last) pairs from space-separated hex code points and ranges ("0041-005A 00AA")."""
    pairs = [item.partition("-") for item in spec.split()]
    return [(int(low, 16), int(high or low, 16)) for low, _, high in pairs]


def _char_class(spec: str) -> str:
    """The body of a regex character class matching the code points in `spec`."""
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in _code_ranges(spec))


# Character tables. tokenizers classifies characters with the `unicode_categories` crate, whose
# tables are Unicode 8.0, while Python's unicodedata is newer (14.0 on 3.11) and changes with the
# Python version. Ids must not depend on the Python version, so these tables are tokenizers' own,
# read off tokenizers 0.22 for every code point; tests/runtime/test_text_encoder.py re-checks all
# of Unicode against the installed tokenizers.

# Removed by clean_text: categories Cc, Cf, Co as tokenizers sees them (not \t \n \r) and U+FFFD.
# Unassigned code points (Cn) are kept, unlike in transformers' slow BertTokenizer.
_OTHER = (
    "0000-0008 000B-000C 000E-001F 007F-009F 00AD 0600-0605 061C 06DD 070F 180E "
    "200B-200F 202A-202E 2060-2064 2066-206F E000-F8FF FEFF FFF9-FFFB 110BD 1BCA0-1BCA3 "
    "1D173-1D17A E0001 E0020-E007F FFFD F0000-FFFFD 100000-10FFFD "
)
# Punctuation for BertPreTokenizer: ASCII 33-47, 58-64, 91-96, 123-126 and categories P*.
_PUNCTUATION = (
    "0021-002F 003A-0040 005B-0060 007B-007E 00A1 00A7 00AB 00B6-00B7 00BB 00BF 037E "
    "0387 055A-055F 0589-058A 05BE 05C0 05C3 05C6 05F3-05F4 0609-060A 060C-060D 061B "
    "061E-061F 066A-066D 06D4 0700-070D 07F7-07F9 0830-083E 085E 0964-0965 0970 0AF0 "
    "0DF4 0E4F 0E5A-0E5B 0F04-0F12 0F14 0F3A-0F3D 0F85 0FD0-0FD4 0FD9-0FDA 104A-104F "
    "10FB 1360-1368 1400 166D-166E 169B-169C 16EB-16ED 1735-1736 17D4-17D6 17D8-17DA "
    "1800-180A 1944-1945 1A1E-1A1F 1AA0-1AA6 1AA8-1AAD 1B5A-1B60 1BFC-1BFF 1C3B-1C3F "
    "1C7E-1C7F 1CC0-1CC7 1CD3 2010-2027 2030-2043 2045-2051 2053-205E 207D-207E "
    "208D-208E 2308-230B 2329-232A 2768-2775 27C5-27C6 27E6-27EF 2983-2998 29D8-29DB "
    "29FC-29FD 2CF9-2CFC 2CFE-2CFF 2D70 2E00-2E2E 2E30-2E42 3001-3003 3008-3011 "
    "3014-301F 3030 303D 30A0 30FB A4FE-A4FF A60D-A60F A673 A67E A6F2-A6F7 A874-A877 "
    "A8CE-A8CF A8F8-A8FA A8FC A92E-A92F A95F A9C1-A9CD A9DE-A9DF AA5C-AA5F AADE-AADF "
    "AAF0-AAF1 ABEB FD3E-FD3F FE10-FE19 FE30-FE52 FE54-FE61 FE63 FE68 FE6A-FE6B "
    "FF01-FF03 FF05-FF0A FF0C-FF0F FF1A-FF1B FF1F-FF20 FF3B-FF3D FF3F FF5B FF5D "
    "FF5F-FF65 10100-10102 1039F 103D0 1056F 10857 1091F 1093F 10A50-10A58 10A7F "
    "10AF0-10AF6 10B39-10B3F 10B99-10B9C 11047-1104D 110BB-110BC 110BE-110C1 11140-11143 "
    "11174-11175 111C5-111C9 111CD 111DB 111DD-111DF 11238-1123D 112A9 114C6 115C1-115D7 "
    "11641-11643 1173C-1173E 12470-12474 16A6E-16A6F 16AF5 16B37-16B3B 16B44 1BC9F "
    "1DA87-1DA8B "
)
# Category Mn, dropped after NFD when stripping accents.
_NONSPACING_MARKS = (
    "0300-036F 0483-0487 0591-05BD 05BF 05C1-05C2 05C4-05C5 05C7 0610-061A 064B-065F "
    "0670 06D6-06DC 06DF-06E4 06E7-06E8 06EA-06ED 0711 0730-074A 07A6-07B0 07EB-07F3 "
    "0816-0819 081B-0823 0825-0827 0829-082D 0859-085B 08E3-0902 093A 093C 0941-0948 "
    "094D 0951-0957 0962-0963 0981 09BC 09C1-09C4 09CD 09E2-09E3 0A01-0A02 0A3C "
    "0A41-0A42 0A47-0A48 0A4B-0A4D 0A51 0A70-0A71 0A75 0A81-0A82 0ABC 0AC1-0AC5 "
    "0AC7-0AC8 0ACD 0AE2-0AE3 0B01 0B3C 0B3F 0B41-0B44 0B4D 0B56 0B62-0B63 0B82 0BC0 "
    "0BCD 0C00 0C3E-0C40 0C46-0C48 0C4A-0C4D 0C55-0C56 0C62-0C63 0C81 0CBC 0CBF 0CC6 "
    "0CCC-0CCD 0CE2-0CE3 0D01 0D41-0D44 0D4D 0D62-0D63 0DCA 0DD2-0DD4 0DD6 0E31 "
    "0E34-0E3A 0E47-0E4E 0EB1 0EB4-0EB9 0EBB-0EBC 0EC8-0ECD 0F18-0F19 0F35 0F37 0F39 "
    "0F71-0F7E 0F80-0F84 0F86-0F87 0F8D-0F97 0F99-0FBC 0FC6 102D-1030 1032-1037 "
    "1039-103A 103D-103E 1058-1059 105E-1060 1071-1074 1082 1085-1086 108D 109D "
    "135D-135F 1712-1714 1732-1734 1752-1753 1772-1773 17B4-17B5 17B7-17BD 17C6 "
    "17C9-17D3 17DD 180B-180D 18A9 1920-1922 1927-1928 1932 1939-193B 1A17-1A18 1A1B "
    "1A56 1A58-1A5E 1A60 1A62 1A65-1A6C 1A73-1A7C 1A7F 1AB0-1ABD 1B00-1B03 1B34 "
    "1B36-1B3A 1B3C 1B42 1B6B-1B73 1B80-1B81 1BA2-1BA5 1BA8-1BA9 1BAB-1BAD 1BE6 "
    "1BE8-1BE9 1BED 1BEF-1BF1 1C2C-1C33 1C36-1C37 1CD0-1CD2 1CD4-1CE0 1CE2-1CE8 1CED "
    "1CF4 1CF8-1CF9 1DC0-1DF5 1DFC-1DFF 20D0-20DC 20E1 20E5-20F0 2CEF-2CF1 2D7F "
    "2DE0-2DFF 302A-302D 3099-309A A66F A674-A67D A69E-A69F A6F0-A6F1 A802 A806 A80B "
    "A825-A826 A8C4 A8E0-A8F1 A926-A92D A947-A951 A980-A982 A9B3 A9B6-A9B9 A9BC A9E5 "
    "AA29-AA2E AA31-AA32 AA35-AA36 AA43 AA4C AA7C AAB0 AAB2-AAB4 AAB7-AAB8 AABE-AABF "
    "AAC1 AAEC-AAED AAF6 ABE5 ABE8 ABED FB1E FE00-FE0F FE20-FE2F 101FD 102E0 10376-1037A "
    "10A01-10A03 10A05-10A06 10A0C-10A0F 10A38-10A3A 10A3F 10AE5-10AE6 11001 11038-11046 "
    "1107F-11081 110B3-110B6 110B9-110BA 11100-11102 11127-1112B 1112D-11134 11173 "
    "11180-11181 111B6-111BE 111CA-111CC 1122F-11231 11234 11236-11237 112DF 112E3-112EA "
    "11300-11301 1133C 11340 11366-1136C 11370-11374 114B3-114B8 114BA 114BF-114C0 "
    "114C2-114C3 115B2-115B5 115BC-115BD 115BF-115C0 115DC-115DD 11633-1163A 1163D "
    "1163F-11640 116AB 116AD 116B0-116B5 116B7 1171D-1171F 11722-11725 11727-1172B "
    "16AF0-16AF4 16B30-16B36 16F8F-16F92 1BC9D-1BC9E 1D167-1D169 1D17B-1D182 1D185-1D18B "
    "1D1AA-1D1AD 1D242-1D244 1DA00-1DA36 1DA3B-1DA6C 1DA75 1DA84 1DA9B-1DA9F 1DAA1-1DAAF "
    "1E8D0-1E8D6 E0100-E01EF "
)
# Rust's char::is_whitespace (the White_Space property); clean_text maps these to a space.
_WHITESPACE = "0009-000D 0020 0085 00A0 1680 2000-200A 2028-2029 202F 205F 3000"
# The CJK ideograph blocks that BertNormalizer surrounds with spaces. tokenizers starts the last
# extension block at 2B920 where transformers' slow BertTokenizer says 2B820; we follow tokenizers.
_CJK = "3400-4DBF 4E00-9FFF F900-FAFF 20000-2A6DF 2A700-2B81F 2B920-2CEAF 2F800-2FA1F"
# Characters newer than the NFD tables of tokenizers (Unicode 9), which therefore treats them as
# starters that do not decompose: combining marks Python would reorder, and U+11938, which Python
# decomposes.
_NFD_UNKNOWN = (
    "07FD 0898-089F 08CA-08D3 09FE 0C3C 0D3B-0D3C 0EBA 1715 1ABF-1ACE 1DF6-1DFA A82C "
    "10D24-10D27 10EAB-10EAC 10F46-10F50 10F82-10F85 11070 1133B 11938 1145E 11839-1183A "
    "1193D-1193E 11943 119E0 11A34 11A47 11A99 11D42 11D44-11D45 11D97 16FF0-16FF1 "
    "1E130-1E136 1E2AE 1E2EC-1E2EF"
)
# Capitals from Unicode 15-16 that tokenizers lowercases (Rust's std tables) and Python 3.11's
# unicodedata does not; a no-op on Pythons that know them.
_LOWERCASE_SINCE_PYTHON_UNICODE = {
    0x1C89: 0x1C8A,
    0xA7CB: 0x0264,
    0xA7CC: 0xA7CD,
    0xA7CE: 0xA7CF,
    0xA7D2: 0xA7D3,
    0xA7D4: 0xA7D5,
    0xA7DA: 0xA7DB,
    0xA7DC: 0x019B,
    **{code: code + 0x20 for code in range(0x10D50, 0x10D66)},
    **{code: code + 0x1B for code in range(0x16EA0, 0x16EB9)},
}

_LOWERCASE_SINCE_PYTHON_UNICODE_RE = re.compile(
    "[" + "".join(map(chr, _LOWERCASE_SINCE_PYTHON_UNICODE)) + "]"
)
_WHITESPACE_CHARS = "".join(
    chr(code) for low, high in _code_ranges(_WHITESPACE) for code in range(low, high + 1)
)
_CONTROL_RE = re.compile(f"[{_char_class(_OTHER)}]")
_WHITESPACE_RE = re.compile(f"[{_char_class(_WHITESPACE)}]")
_CJK_RE = re.compile(f"[{_char_class(_CJK)}]")
_NFD_UNKNOWN_RE = re.compile(f"([{_char_class(_NFD_UNKNOWN)}]+)")
_NONSPACING_MARK_RE = re.compile(f"[{_char_class(_NONSPACING_MARKS)}]+")
_WORD_RE = re.compile(
    f"[{_char_class(_PUNCTUATION)}]|[^{_char_class(_PUNCTUATION)}{_char_class(_WHITESPACE)}]+"
)
