# coding=utf-8
"""Tokenization for BERT: text -> WordPiece tokens -> vocabulary ids.

`FullTokenizer` runs `BasicTokenizer` (drops control characters, lower-cases and strips accents
when asked, splits on whitespace, punctuation and CJK characters) and then `WordpieceTokenizer`
(greedy longest-match-first pieces from the vocabulary, `##` marking a piece that continues a
word). For any text it gives exactly the tokens of Google's original `tokenization.py`, and keeps
its names and signatures, so code that does `import tokenization` works unchanged.

It is several times faster than the original while staying plain Python. The original looks at
every character in a Python loop; here the same rules run over whole strings in C (`str.translate`,
`str.split`, `str.isascii`, regular expressions), with per-character tables built once from
`unicodedata` by the original's own predicates, and `FullTokenizer` remembers the tokens of
recently seen words in a cache of bounded size. Each shortcut says in a comment why its result is
the same.
"""

import collections
import itertools
import re
import sys
import unicodedata

import tensorflow.compat.v1 as tf

# Google's released checkpoints, by the casing their vocabulary was built with.
_LOWER_CASED_MODELS = (
    "uncased_L-24_H-1024_A-16", "uncased_L-12_H-768_A-12",
    "multilingual_L-12_H-768_A-12", "chinese_L-12_H-768_A-12")
_CASED_MODELS = (
    "cased_L-12_H-768_A-12", "cased_L-24_H-1024_A-16", "multi_cased_L-12_H-768_A-12")

# The CJK Unified Ideographs blocks, their extensions and compatibility blocks, as inclusive code
# point ranges. Each such character becomes a word of its own. Hangul, Hiragana and Katakana are
# not here: those scripts put spaces between words.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

# Every printable ASCII character that is not a letter or digit counts as punctuation, including
# the ones Unicode calls symbols ("$", "+", "^", "`", ...).
_ASCII_PUNCTUATION_RANGES = ((33, 47), (58, 64), (91, 96), (123, 126))

# FullTokenizer caches the tokens of at most this many words, each of at most this many
# characters: a few megabytes on real text, whatever its length.
_WORD_CACHE_ENTRIES = 1 << 15
_WORD_CACHE_MAX_WORD_CHARS = 64


def _google_model_name(init_checkpoint):
  """Returns the folder name in ".../NAME/bert_model.ckpt*", or None for other paths."""
  match = re.match("^.*?([A-Za-z0-9_-]+)/bert_model.ckpt", init_checkpoint or "")
  return match.group(1) if match else None


def checkpoint_do_lower_case(init_checkpoint):
  """Returns the casing of a Google checkpoint named in the path, or None for other paths.

  The casing of a checkpoint is not recorded in bert_config.json, so it is guessed from the
  folder name of `init_checkpoint` (".../uncased_L-12_H-768_A-12/bert_model.ckpt").

  Returns:
    True for Google's uncased (lower-cased) models, False for its cased ones, None for paths
    that name none of Google's released models.
  """
  model_name = _google_model_name(init_checkpoint)
  if model_name in _LOWER_CASED_MODELS:
    return True
  if model_name in _CASED_MODELS:
    return False
  return None


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Raises ValueError if `do_lower_case` contradicts a Google checkpoint named in the path.

  Paths that name none of Google's released models are accepted as they are
  (`checkpoint_do_lower_case`).

  Args:
    do_lower_case: bool, the value of the `--do_lower_case` flag.
    init_checkpoint: str or None, the value of the `--init_checkpoint` flag.
  """
  needed = checkpoint_do_lower_case(init_checkpoint)
  if needed is None or bool(do_lower_case) == needed:
    return
  raise ValueError(
      "`--do_lower_case=%s` does not fit `--init_checkpoint=%s`: `%s` looks like a %s model, "
      "so pass `--do_lower_case=%s` to tokenize as it was pre-trained. (The casing is guessed "
      "from the checkpoint's folder name; if the guess is wrong, remove this check.)"
      % (not needed, init_checkpoint, _google_model_name(init_checkpoint),
         "uncased (lower-cased)" if needed else "cased", needed))


def convert_to_unicode(text):
  """Returns `text` as a str, decoding bytes as UTF-8 and dropping invalid bytes."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError("Expected str or UTF-8 bytes, got %s" % type(text))


def printable_text(text):
  """Returns `text` as a str suitable for print() and tf.logging (bytes are decoded as UTF-8)."""
  return convert_to_unicode(text)


def load_vocab(vocab_file):
  """Reads a vocabulary file, one token per line, into an OrderedDict token -> index.

  Each line is stripped of surrounding whitespace. Indices count distinct tokens in file order;
  a repeated line keeps its first index. Any path tf.io.gfile reads works (gs:// included).

  Raises:
    ValueError: naming the file, if it cannot be read as UTF-8 text or has no "[UNK]" line.
  """
  vocab = collections.OrderedDict()
  try:
    # A folder opens and reads as empty, which would end in the misleading "no [UNK]" below.
    if tf.io.gfile.isdir(vocab_file):
      raise ValueError("Vocabulary file %s is a directory" % vocab_file)
    with tf.io.gfile.GFile(vocab_file, "r") as reader:
      for line in reader:
        token = convert_to_unicode(line).strip()
        if token not in vocab:
          vocab[token] = len(vocab)
  except (tf.errors.OpError, OSError, UnicodeDecodeError) as error:
    raise ValueError("Cannot read vocabulary file %s: %s" % (vocab_file, error)) from error
  if "[UNK]" not in vocab:
    raise ValueError("Vocabulary file %s has no [UNK] line (%d tokens read); is it a WordPiece "
                     "vocab.txt?" % (vocab_file, len(vocab)))
  return vocab


def convert_by_vocab(vocab, items):
  """Returns [vocab[item] for item in items]: ids of tokens, or tokens of ids with inv_vocab."""
  return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
  """Maps a list of tokens to their ids; a token missing from `vocab` raises KeyError."""
  return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
  """Maps a list of ids to their tokens with `inv_vocab` (id -> token)."""
  return convert_by_vocab(inv_vocab, ids)


def word_spans(text):
  """Returns where the words of `text` are, as BasicTokenizer splits text before lower-casing.

  For taggers, which tag words and must find them again in the raw text. A word is a run of
  characters between whitespace, punctuation and CJK characters, or one punctuation or CJK
  character on its own. A character that the tokenizer drops stays in the word it is in, except
  the control characters that Python counts as whitespace (vertical tab, form feed, U+001C to
  U+001F, U+0085): they separate words here, where the tokenizer joins their neighbours.

  Args:
    text: str.

  Returns:
    list of (start, end) character offsets, in order; text[start:end] is a word.
  """
  return [match.span() for match in _WORD.finditer(text)]


def whitespace_tokenize(text):
  """Splits `text` on runs of whitespace (Python's notion of it); no empty strings result."""
  return text.split()


class FullTokenizer(object):
  """Text -> WordPiece tokens: BasicTokenizer, then WordpieceTokenizer on each basic token."""

  def __init__(self, vocab_file, do_lower_case=True):
    """Loads `vocab_file` (see load_vocab) and sets up both tokenizers on it.

    Args:
      vocab_file: path of the vocab.txt the model was trained with.
      do_lower_case: True for uncased models (lower-case and strip accents), False for cased ones.
    """
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {index: token for token, index in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)
    self._word_tokens = {}
    self._word_tokens_settings = None

  def tokenize(self, text):
    """Returns the WordPiece tokens (list of str) of `text` (str or UTF-8 bytes)."""
    cached_tokens = self._word_cache()
    tokens = []
    # Every step of the original after the whitespace split works on one word at a time and
    # depends on nothing but that word, so a word's tokens can be remembered.
    for word in self.basic_tokenizer._clean_words(text):
      word_tokens = cached_tokens.get(word)
      if word_tokens is None:
        word_tokens = self._tokenize_word(word)
        # Short words only, and a fresh start when full: memory stays bounded, and frequent
        # words are back after a few lines.
        if len(word) <= _WORD_CACHE_MAX_WORD_CHARS:
          if len(cached_tokens) >= _WORD_CACHE_ENTRIES:
            cached_tokens.clear()
          cached_tokens[word] = word_tokens
      tokens += word_tokens
    return tokens

  def convert_tokens_to_ids(self, tokens):
    """Maps tokens to vocabulary ids; a token missing from the vocabulary raises KeyError."""
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    """Maps vocabulary ids to tokens."""
    return convert_by_vocab(self.inv_vocab, ids)

  def _tokenize_word(self, word):
    """Returns, as a tuple, the WordPiece tokens of one word from BasicTokenizer._clean_words."""
    pieces = []
    for token in self.basic_tokenizer._tokenize_word(word):
      pieces += self.wordpiece_tokenizer._tokenize_word(token)
    return tuple(pieces)

  def _word_cache(self):
    """Returns the word -> tokens cache, emptied first if what its entries depend on changed.

    So code that adds tokens to `vocab` or changes a sub-tokenizer's settings after construction
    still gets the original's tokens. (Replacing an entry of `vocab` in place, which keeps its
    size, is not noticed: build a new tokenizer after doing that.)
    """
    basic, wordpiece = self.basic_tokenizer, self.wordpiece_tokenizer
    settings = (basic.do_lower_case, len(wordpiece.vocab), wordpiece.unk_token,
                wordpiece.max_input_chars_per_word)
    if settings != self._word_tokens_settings:
      self._word_tokens.clear()
      self._word_tokens_settings = settings
    return self._word_tokens


class BasicTokenizer(object):
  """Splits text into words, punctuation and CJK characters; optionally lower-cases it."""

  def __init__(self, do_lower_case=True):
    """Args: do_lower_case: lower-case and strip accents (True for uncased models)."""
    self.do_lower_case = do_lower_case

  def tokenize(self, text):
    """Returns the basic tokens (list of str) of `text` (str or UTF-8 bytes)."""
    tokens = []
    for word in self._clean_words(text):
      tokens.extend(self._tokenize_word(word))
    return tokens

  def _clean_words(self, text):
    """Returns the words of `text`: _clean_text, _tokenize_chinese_chars, whitespace split."""
    text = convert_to_unicode(text)
    if text.isascii():
      # No CJK character is ASCII. The only ASCII characters _clean_text changes are controls,
      # which str.isprintable() looks for much faster than str.translate replaces them.
      if not text.isprintable():
        text = self._clean_text(text)
      return whitespace_tokenize(text)
    # Both steps map each character on its own, so they may run on pieces of the text, and the
    # pieces that are all ASCII take str.translate's fast path for ASCII strings and hold no
    # CJK character.
    runs = _NON_ASCII_RUN.split(text)  # All-ASCII runs at even positions, the others at odd.
    runs[0::2] = [self._clean_text(run) for run in runs[0::2]]
    runs[1::2] = [self._tokenize_chinese_chars(self._clean_text(run)) for run in runs[1::2]]
    return whitespace_tokenize("".join(runs))

  def _tokenize_word(self, word):
    """Returns the basic tokens of one word from _clean_words.

    The original joins the pieces of all words with spaces and splits again, which only drops
    empty pieces (a word of nothing but accents); _run_split_on_punc returns none, and no piece
    holds whitespace, since lower-casing and NFD never turn a non-space character into one.
    """
    if self.do_lower_case:
      word = self._run_strip_accents(word.lower())
    return self._run_split_on_punc(word)

  def _run_strip_accents(self, text):
    """Decomposes `text` (Unicode NFD) and drops the nonspacing marks (category Mn)."""
    # NFD leaves ASCII unchanged and no ASCII character is a mark.
    if text.isascii():
      return text
    return unicodedata.normalize("NFD", text).translate(_NONSPACING_MARKS)

  def _run_split_on_punc(self, text):
    """Splits `text` into single punctuation characters and the runs between them."""
    # Letters and digits (str.isalnum) are never punctuation; tests check all of Unicode.
    if text.isalnum():
      return [text]
    # The ASCII pattern is the full one restricted to ASCII, and several times faster.
    if text.isascii():
      return _ASCII_PUNCTUATION_OR_RUN.findall(text)
    return _PUNCTUATION_OR_RUN.findall(text)

  def _tokenize_chinese_chars(self, text):
    """Puts a space on each side of every CJK character."""
    return _CJK_CHARACTER.sub(r" \g<0> ", text)

  def _is_chinese_char(self, cp):
    """Returns True if code point `cp` (int) is in one of the CJK ideograph blocks."""
    return any(first <= cp <= last for first, last in _CJK_RANGES)

  def _clean_text(self, text):
    """Drops NUL, U+FFFD and control characters, and turns every whitespace character to " "."""
    return text.translate(_CLEAN_TEXT_TABLE)


class WordpieceTokenizer(object):
  """Splits words into the longest pieces found in the vocabulary, left to right."""

  def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=200):
    """Args:
      vocab: token -> id mapping (anything that supports `in` and len()).
      unk_token: the token for a word that cannot be split into vocabulary pieces.
      max_input_chars_per_word: longer words become `unk_token` without being looked at.
    """
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    self._longest_entry_for_size = (None, 0)

  def tokenize(self, text):
    """Returns the word pieces of the whitespace-separated words of `text`.

    Each word is cut greedily from the left, taking at every step the longest prefix of the rest
    that is in the vocabulary (as "##" + prefix after the first piece): with the real uncased
    vocabulary, "tokenization" -> ["token", "##ization"]. A word that cannot be covered that way,
    or that is longer than max_input_chars_per_word, becomes [unk_token] as a whole.

    Args:
      text: str or UTF-8 bytes, normally the output of BasicTokenizer joined with spaces.

    Returns:
      list of str.
    """
    tokens = []
    for word in whitespace_tokenize(convert_to_unicode(text)):
      tokens.extend(self._tokenize_word(word))
    return tokens

  def _tokenize_word(self, word):
    """Returns the word pieces (list of str) of one word without whitespace."""
    if len(word) > self.max_input_chars_per_word:
      return [self.unk_token]
    vocab = self.vocab
    if word in vocab:
      return [word]  # The whole word is the longest match; most words end here.
    longest_entry = self._longest_entry()
    pieces = []
    start = 0
    while start < len(word):
      prefix = "##" if start else ""
      # A candidate longer than every vocabulary entry cannot match, so the search may start at
      # that length instead of at the end of the word: the first match found is the same.
      end = min(len(word), start + longest_entry)
      while end > start and prefix + word[start:end] not in vocab:
        end -= 1
      if end == start:
        return [self.unk_token]
      pieces.append(prefix + word[start:end])
      start = end
    return pieces

  def _longest_entry(self):
    """Returns the length of the longest vocabulary entry, recomputed when the size changes."""
    size, longest = self._longest_entry_for_size
    if size != len(self.vocab):
      longest = max(map(len, self.vocab), default=0)
      self._longest_entry_for_size = (len(self.vocab), longest)
    return longest


def _is_whitespace(char):
  """Returns True for " ", tab, newline, carriage return and space separators (category Zs)."""
  # Tab, newline and carriage return are control characters to Unicode, but spaces here.
  if char in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(char) == "Zs"


def _is_control(char):
  """Returns True for control (Cc) and format (Cf) characters except tab, newline and CR."""
  if char in ("\t", "\n", "\r"):
    return False
  return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
  """Returns True for ASCII non-alphanumeric printable characters and Unicode punctuation (P*)."""
  code_point = ord(char)
  if any(first <= code_point <= last for first, last in _ASCII_PUNCTUATION_RANGES):
    return True
  return unicodedata.category(char).startswith("P")


def _code_point_ranges(code_points):
  """Groups sorted code points (ints) into a list of inclusive (first, last) ranges."""
  ranges = []
  for code_point in code_points:
    if ranges and ranges[-1][1] == code_point - 1:
      ranges[-1] = (ranges[-1][0], code_point)
    else:
      ranges.append((code_point, code_point))
  return ranges


def _class_body(ranges):
  """Returns the inside of a regex character class for inclusive code point ranges."""
  return "".join("\\U%08x-\\U%08x" % (first, last) for first, last in ranges)


def _character_tables():
  """Applies the predicates above to every code point that can satisfy them, once.

  Returns:
    clean_text_table: str.translate table that deletes what the original's _clean_text drops
      (NUL, U+FFFD, _is_control) and maps each _is_whitespace character to " ".
    nonspacing_marks: str.translate table that deletes every character of category Mn.
    punctuation_ranges: inclusive code point ranges of the _is_punctuation characters.
  """
  # Calling the predicates for all 1.1 million code points in Python would take about a second.
  # They can only be true for a few categories, for ASCII and for U+FFFD, so C finds the
  # candidates from their categories and the predicates decide on those few thousand.
  categories = frozenset(("Cc", "Cf", "Zs", "Mn", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps"))
  code_points = range(sys.maxunicode + 1)
  candidates = set(itertools.compress(
      code_points,
      map(categories.__contains__, map(unicodedata.category, map(chr, code_points)))))
  candidates.update(range(128), (0xFFFD,))
  candidates = [chr(code_point) for code_point in sorted(candidates)]

  clean_text_table = {}
  for char in candidates:
    if char in ("\0", "\ufffd") or _is_control(char):
      clean_text_table[ord(char)] = None
    elif _is_whitespace(char):
      clean_text_table[ord(char)] = " "
  nonspacing_marks = {ord(char): None for char in candidates
                      if unicodedata.category(char) == "Mn"}
  punctuation_ranges = _code_point_ranges(
      [ord(char) for char in candidates if _is_punctuation(char)])
  return clean_text_table, nonspacing_marks, punctuation_ranges


_CLEAN_TEXT_TABLE, _NONSPACING_MARKS, _PUNCTUATION_RANGES = _character_tables()
# A run of non-ASCII characters. Written as one character and then a repeat, not as "[...]+",
# because the regex engine then finds the first one with a fast scan (5x faster on mostly-ASCII
# text).
_NON_ASCII_RUN = re.compile("([^\\x00-\\x7f][^\\x00-\\x7f]*)")
_CJK_CHARACTER = re.compile("[%s]" % _class_body(_CJK_RANGES))
# One punctuation character, or a run of anything else.
_PUNCTUATION_OR_RUN = re.compile("[{0}]|[^{0}]+".format(_class_body(_PUNCTUATION_RANGES)))
_ASCII_PUNCTUATION_OR_RUN = re.compile(
    "[{0}]|[^{0}]+".format(_class_body(_ASCII_PUNCTUATION_RANGES)))
# A word of `word_spans`: one punctuation or CJK character, or a run of other non-space ones.
_WORD = re.compile(r"[{0}]|[^{0}\s]+".format(
    _class_body(list(_PUNCTUATION_RANGES) + list(_CJK_RANGES))))
