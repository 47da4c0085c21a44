"""Tests of tokenization.py: reference fixtures, the original package as an oracle, edge cases."""

import inspect
import random
import sys
import types
import unicodedata

import pytest
import tensorflow as tf_module

import support
import tokenization

ALL_CODE_POINTS = range(sys.maxunicode + 1)
# Surrogates cannot appear in text read from a file; everything else can.
ALL_CHARS = "".join(chr(cp) for cp in ALL_CODE_POINTS if not 0xD800 <= cp <= 0xDFFF)
BMP_CHARS = "".join(char for char in ALL_CHARS if ord(char) < 0x10000)


@pytest.fixture(scope="module")
def original():
  """The original tokenization module (bert-tensorflow 1.0.4), patched to run here.

  That release reads an absl flag, `preserve_unused_tokens` (default False), that nothing parses
  in a test; its default is given to it directly.
  """
  with pytest.MonkeyPatch.context() as patch:
    if not hasattr(tf_module, "gfile"):
      patch.setattr(tf_module, "gfile", tf_module.compat.v1.gfile, raising=False)
    from bert import tokenization as original_module
    patch.setattr(original_module, "FLAGS",
                  types.SimpleNamespace(preserve_unused_tokens=False))
    yield original_module


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizer_pair(request, original):
  """(ours, original) FullTokenizers on the real uncased vocabulary, for both casings."""
  return (tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=request.param),
          original.FullTokenizer(support.VOCAB_FILE, do_lower_case=request.param))


def read_fixture(name):
  with open(support.fixture_path("tokenization", name), encoding="utf-8", newline="\n") as f:
    return f.read().split("\n")


def random_texts(seed, count):
  """Seeded random strings mixing scripts, accents, marks, CJK, controls, emoji and long words."""
  rng = random.Random(seed)
  vocab = list(tokenization.load_vocab(support.VOCAB_FILE))
  pools = [
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
      "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
      " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u3000",
      "\x00\x01\x7f\x9f\xad\u0600\u061c\u200b\u200c\u200d\u200e\u2060\u2066\ufeff\ufffd"
      "\ufff9\U000110bd\U0001d173\U000e0001\U000e0041",
      "\u00e9\u00c9\u00fc\u00f1\u00e7\u00c5\u0130\u0131\u00df\u1e9e\u01c5\ufb01\u212a\u212b\u2126"
      "\u1fef\u1fee\u0344\u0387\u037e\u0340",
      "\u0300\u0301\u0308\u0327\u0332\u0345\u0483\u0591\u064b\u093c\u20dd\u20e3\ufe0f\U000e0100",
      "\u03a3\u03c3\u03c2\u0391\u0392\u0395\u039f\u0386\u1f08",
      "\u4e00\u4e2d\u6587\u9fff\u3400\u4dbf\uf900\ufa6a\ufaff\U00020000\U0002a6df\U0002a700"
      "\U0002b740\U0002b820\U0002ceaf\U0002f800\U0002fa1f\U0002ceb0\U00030000\u3007\u2f00",
      "\uac00\ud7a3\u3042\u30a2\u0627\u0628\u0915\u0e01\u0e3d\u05d0\u0410\u044f\uff21\uff41\uff10",
      "\u2010\u2014\u2018\u2019\u201c\u2026\u3001\u3002\uff0c\uff01\u00a1\u00bf\u055d\u061f"
      "\u2e3a\U00010100\U0001e95e\u00b4\u02c6\u2122\u00a9\u20ac",
      "\U0001f600\U0001f44d\U0001f3fd\U0001f1fa\U0001f1f8\u2764\U0001f9d1\u200d\U0001f4bb",
  ]

  def any_char():
    while True:
      code_point = rng.randrange(sys.maxunicode + 1)
      if not 0xD800 <= code_point <= 0xDFFF:
        return chr(code_point)

  def piece():
    kind = rng.random()
    if kind < 0.35:
      return rng.choice(vocab)
    if kind < 0.45:
      return "##" + rng.choice(vocab)
    if kind < 0.5:
      return any_char()
    if kind < 0.51:
      length = rng.choice([199, 200, 201, 202, 250])
      return "".join(rng.choice("ab\u00e9") for _ in range(length))
    pool = rng.choice(pools)
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))

  texts = ["", " ", "\t\n", "\x00", "\u200b", "##", "###", "## ##", "[UNK]", "a" * 200,
           "a" * 201, "\u00e9" * 200, "\u0130" * 150]
  for _ in range(count):
    separator = rng.choice(["", " ", "", "\u3000", "\n"])
    texts.append(separator.join(piece() for _ in range(rng.randint(0, 12))))
  return texts


def test_fixture_tokens_match_reference():
  corpus = read_fixture("corpus.txt")
  for do_lower_case, name in ((True, "tokens_uncased.txt"), (False, "tokens_cased.txt")):
    expected = read_fixture(name)
    assert len(expected) == len(corpus) + 1 and expected[-1] == ""
    tokenizer = tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=do_lower_case)
    for line_number, (line, tokens) in enumerate(zip(corpus, expected)):
      assert " ".join(tokenizer.tokenize(line)) == tokens, (name, line_number, line)


@pytest.mark.slow
def test_python_documentation_matches_original(tokenizer_pair):
  from pydoc_data.topics import topics
  ours, theirs = tokenizer_pair
  text = "\n".join(topics.values())
  expected = theirs.tokenize(text)
  assert len(expected) > 100000
  assert ours.tokenize(text) == expected
  # Again, from the word cache this time, and topic by topic.
  assert ours.tokenize(text) == expected
  for topic in list(topics.values())[:20]:
    assert ours.tokenize(topic) == theirs.tokenize(topic)


@pytest.mark.slow
def test_random_unicode_matches_original(tokenizer_pair):
  ours, theirs = tokenizer_pair
  for text in random_texts(seed=1234, count=1200):
    assert ours.tokenize(text) == theirs.tokenize(text), ascii(text)
    assert ours.basic_tokenizer.tokenize(text) == theirs.basic_tokenizer.tokenize(text)
    wordpiece_input = " ".join(theirs.basic_tokenizer.tokenize(text))
    assert (ours.wordpiece_tokenizer.tokenize(wordpiece_input)
            == theirs.wordpiece_tokenizer.tokenize(wordpiece_input))
  utf8 = "Caf\u00e9 \u4e2d\u6587, na\u00efve!".encode("utf-8") + b"\xff"
  assert ours.tokenize(utf8) == theirs.tokenize(utf8)


def test_every_basic_multilingual_plane_character_matches_original(tokenizer_pair):
  ours, theirs = tokenizer_pair
  text = " ".join(BMP_CHARS[i:i + 7] for i in range(0, len(BMP_CHARS), 7))
  assert ours.tokenize(text) == theirs.tokenize(text)


@pytest.mark.slow
def test_character_predicates_and_tables_match_original_on_all_code_points(original):
  chars = [chr(code_point) for code_point in ALL_CODE_POINTS]
  results = {}
  for name in ("_is_control", "_is_whitespace", "_is_punctuation"):
    results[name] = list(map(getattr(original, name), chars))
    mismatches = [hex(ord(char)) for char, ours, theirs in zip(
        chars, map(getattr(tokenization, name), chars), results[name]) if ours != theirs]
    assert not mismatches, (name, mismatches[:10])
  dropped = {cp for cp, is_control in enumerate(results["_is_control"])
             if is_control or cp in (0, 0xFFFD)}
  whitespace = {cp for cp, is_whitespace in enumerate(results["_is_whitespace"])
                if is_whitespace} - dropped
  punctuation = {cp for cp, is_punctuation in enumerate(results["_is_punctuation"])
                 if is_punctuation}
  table = tokenization._CLEAN_TEXT_TABLE
  assert {cp for cp, replacement in table.items() if replacement is None} == dropped
  assert {cp for cp, replacement in table.items() if replacement == " "} == whitespace
  assert len(table) == len(dropped) + len(whitespace)
  assert {cp for first, last in tokenization._PUNCTUATION_RANGES
          for cp in range(first, last + 1)} == punctuation
  # The str.isalnum() shortcut of _run_split_on_punc: no letter or digit is punctuation.
  assert not {ord(char) for char in ALL_CHARS if char.isalnum()} & punctuation


@pytest.mark.slow
def test_basic_steps_match_original_on_all_characters(original):
  ours = tokenization.BasicTokenizer()
  theirs = original.BasicTokenizer()
  assert ours._clean_text(ALL_CHARS) == theirs._clean_text(ALL_CHARS)
  assert ours._tokenize_chinese_chars(ALL_CHARS) == theirs._tokenize_chinese_chars(ALL_CHARS)
  assert ours._run_strip_accents(ALL_CHARS) == theirs._run_strip_accents(ALL_CHARS)
  assert ours._run_split_on_punc(ALL_CHARS) == theirs._run_split_on_punc(ALL_CHARS)
  for code_point in list(range(0x3300, 0xFB00)) + list(range(0x1FF00, 0x30000, 7)):
    assert ours._is_chinese_char(code_point) == theirs._is_chinese_char(code_point)
  ascii_chars = "".join(map(chr, range(128)))
  for text in [ascii_chars, "a.b", "..", "x", ""] + list(ascii_chars):
    assert ours._run_split_on_punc(text) == theirs._run_split_on_punc(text), ascii(text)


def test_lower_casing_and_decomposition_never_make_whitespace():
  """BasicTokenizer relies on it to keep each word's pieces free of whitespace."""
  changed = "".join(unicodedata.normalize("NFD", char.lower()) + unicodedata.normalize("NFD", char)
                    for char in ALL_CHARS if not char.isspace())
  assert len(changed.split()) == 1


def test_wordpiece_greedy_longest_match_first():
  vocab = {token: index for index, token in enumerate(
      ["[UNK]", "[CLS]", "[SEP]", "tok", "token", "##en", "##iz", "##ation", "##s", "re", ",",
       "##tok"])}
  wordpiece = tokenization.WordpieceTokenizer(vocab)
  assert wordpiece.tokenize("tokenization retokens") == [
      "token", "##iz", "##ation", "re", "##tok", "##en", "##s"]
  assert wordpiece.tokenize("tokenization tokens") == ["token", "##iz", "##ation", "token", "##s"]
  # Greedy: "token" is taken first, and then "##s" alone cannot cover the rest.
  assert wordpiece.tokenize("tokensz") == ["[UNK]"]
  assert wordpiece.tokenize("tokenq ,") == ["[UNK]", ","]
  assert wordpiece.tokenize(b"token") == ["token"]
  assert wordpiece.tokenize("") == []
  short = tokenization.WordpieceTokenizer(vocab, unk_token="<?>", max_input_chars_per_word=4)
  assert short.tokenize("token tok") == ["<?>", "tok"]


def test_full_tokenizer_small_vocab(tmp_path):
  vocab_file = tmp_path / "vocab.txt"
  vocab_file.write_text("\n".join(
      ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "re", "##play", "##ed", "play", "caf", "##e", ",", "!",
       "\u4e2d"]) + "\n", encoding="utf-8")
  uncased = tokenization.FullTokenizer(str(vocab_file))
  tokens = uncased.tokenize(" RePLAYED,\tcaf\u00e9\u4e2d\u6587!\u200b ")
  assert tokens == ["re", "##play", "##ed", ",", "caf", "##e", "\u4e2d", "[UNK]", "!"]
  assert uncased.convert_tokens_to_ids(tokens) == [4, 5, 6, 10, 8, 9, 12, 1, 11]
  assert uncased.convert_ids_to_tokens([4, 5, 6]) == ["re", "##play", "##ed"]
  cased = tokenization.FullTokenizer(str(vocab_file), do_lower_case=False)
  assert cased.tokenize("Replay replay caf\u00e9") == ["[UNK]", "re", "##play", "[UNK]"]
  with pytest.raises(KeyError):
    uncased.convert_tokens_to_ids(["nope"])


def test_load_vocab_matches_original(tmp_path, original):
  vocab_file = tmp_path / "vocab.txt"
  vocab_file.write_bytes(
      b"[PAD]\r\n[UNK]\n  spaced  \n\n[UNK]\nsame\nsame\n\t\ncaf\xc3\xa9\nlast-without-newline")
  vocab = tokenization.load_vocab(str(vocab_file))
  assert vocab == original.load_vocab(str(vocab_file))
  assert list(vocab.items()) == list(original.load_vocab(str(vocab_file)).items())
  assert list(vocab) == ["[PAD]", "[UNK]", "spaced", "", "same", "caf\u00e9",
                         "last-without-newline"]
  tokenizer = tokenization.FullTokenizer(str(vocab_file))
  assert tokenizer.vocab == vocab
  assert tokenizer.inv_vocab == {index: token for token, index in vocab.items()}


def test_real_vocab_loads_like_original(original):
  vocab = tokenization.load_vocab(support.VOCAB_FILE)
  assert list(vocab.items()) == list(original.load_vocab(support.VOCAB_FILE).items())
  assert len(vocab) == 30522


@pytest.mark.parametrize("make_path,message", [
    (lambda tmp: str(tmp / "missing.txt"), "Cannot read vocabulary file"),
    (lambda tmp: str(tmp), "is a directory"),
    (lambda tmp: write(tmp / "latin1.txt", b"[UNK]\ncaf\xe9\n"), "Cannot read vocabulary file"),
    (lambda tmp: write(tmp / "empty.txt", b""), "has no [UNK] line"),
    (lambda tmp: write(tmp / "no_unk.txt", b"[PAD]\n[CLS]\nhello\n"), "has no [UNK] line"),
])
def test_bad_vocabulary_file_is_a_clear_error(tmp_path, make_path, message):
  path = make_path(tmp_path)
  for load in (tokenization.load_vocab, tokenization.FullTokenizer):
    with pytest.raises(ValueError) as error:
      load(path)
    assert message in str(error.value) and path in str(error.value)
    assert "\n" not in str(error.value)


def write(path, data):
  path.write_bytes(data)
  return str(path)


def test_validate_case_matches_checkpoint_like_original(original):
  checkpoints = [
      None, "", "model.ckpt", "/tmp/bert_model.ckpt",
      "gs://bucket/uncased_L-12_H-768_A-12/bert_model.ckpt",
      "/models/uncased_L-24_H-1024_A-16/bert_model.ckpt-100",
      "multilingual_L-12_H-768_A-12/bert_model.ckpt", "x/chinese_L-12_H-768_A-12/bert_model.ckpt",
      "/m/cased_L-12_H-768_A-12/bert_model.ckpt", "/m/cased_L-24_H-1024_A-16/bert_model.ckpt",
      "/m/multi_cased_L-12_H-768_A-12/bert_model.ckpt", "/m/my_model/bert_model.ckpt",
      "/m/wwm_uncased_L-24_H-1024_A-16/bert_model.ckpt"]
  for checkpoint in checkpoints:
    for do_lower_case in (True, False):
      try:
        original.validate_case_matches_checkpoint(do_lower_case, checkpoint)
        original_raised = False
      except ValueError:
        original_raised = True
      if original_raised:
        with pytest.raises(ValueError) as error:
          tokenization.validate_case_matches_checkpoint(do_lower_case, checkpoint)
        assert checkpoint in str(error.value)
        assert "--do_lower_case=%s" % (not do_lower_case) in str(error.value)
      else:
        tokenization.validate_case_matches_checkpoint(do_lower_case, checkpoint)
  with pytest.raises(ValueError, match="uncased_L-12_H-768_A-12.*uncased"):
    tokenization.validate_case_matches_checkpoint(
        False, "/m/uncased_L-12_H-768_A-12/bert_model.ckpt")


def test_text_conversion_helpers():
  assert tokenization.convert_to_unicode("caf\u00e9") == "caf\u00e9"
  assert tokenization.convert_to_unicode(b"caf\xc3\xa9\xff") == "caf\u00e9"
  assert tokenization.printable_text(b"caf\xc3\xa9") == "caf\u00e9"
  assert tokenization.printable_text("x") == "x"
  for bad in (None, 3, ["a"]):
    with pytest.raises(ValueError, match="Expected str or UTF-8 bytes"):
      tokenization.convert_to_unicode(bad)
    with pytest.raises(ValueError):
      tokenization.printable_text(bad)
  assert tokenization.whitespace_tokenize("  a\tb\u3000c\u2028d  ") == ["a", "b", "c", "d"]
  assert tokenization.whitespace_tokenize(" \n ") == []
  assert tokenization.convert_by_vocab({"a": 1, "b": 2}, ["b", "a"]) == [2, 1]
  assert tokenization.convert_tokens_to_ids({"a": 1}, ["a"]) == [1]
  assert tokenization.convert_ids_to_tokens({1: "a"}, [1, 1]) == ["a", "a"]


def test_public_names_and_signatures_match_original(original):
  for name in ["load_vocab", "convert_to_unicode", "printable_text", "convert_by_vocab",
               "convert_tokens_to_ids", "convert_ids_to_tokens", "whitespace_tokenize",
               "validate_case_matches_checkpoint", "_is_whitespace", "_is_control",
               "_is_punctuation"]:
    assert (inspect.signature(getattr(tokenization, name))
            == inspect.signature(getattr(original, name))), name
  for cls, methods in [("FullTokenizer", ["__init__", "tokenize", "convert_tokens_to_ids",
                                          "convert_ids_to_tokens"]),
                       ("WordpieceTokenizer", ["__init__", "tokenize"])]:
    for method in methods:
      assert (inspect.signature(getattr(getattr(tokenization, cls), method))
              == inspect.signature(getattr(getattr(original, cls), method))), (cls, method)
  # Google's tokenization.py has no `vocab` argument here; the 1.0.4 package added one.
  assert str(inspect.signature(tokenization.BasicTokenizer)) == "(do_lower_case=True)"


def test_word_cache_is_bounded(monkeypatch):
  monkeypatch.setattr(tokenization, "_WORD_CACHE_ENTRIES", 50)
  tokenizer = tokenization.FullTokenizer(support.VOCAB_FILE)
  words = ["w%d" % i for i in range(175)]
  assert tokenizer.tokenize(" ".join(words)) == tokenization.WordpieceTokenizer(
      tokenizer.vocab).tokenize(" ".join(words))
  assert 0 < len(tokenizer._word_tokens) <= 50
  long_word = "a" * (tokenization._WORD_CACHE_MAX_WORD_CHARS + 1)
  tokenizer.tokenize(long_word)
  assert long_word not in tokenizer._word_tokens


def test_changes_after_construction_are_seen(original):
  ours = tokenization.FullTokenizer(support.VOCAB_FILE)
  theirs = original.FullTokenizer(support.VOCAB_FILE)
  text = "Qwertyuiopasdfghjklzxcvbnm qwertyuiopasdfghjklzxcvbnm Hello"
  assert ours.tokenize(text) == theirs.tokenize(text)
  for tokenizer in (ours, theirs):
    tokenizer.vocab["qwertyuiopasdfghjklzxcvbnm"] = len(tokenizer.vocab)
  assert ours.tokenize(text) == theirs.tokenize(text)
  assert "qwertyuiopasdfghjklzxcvbnm" in ours.tokenize(text)
  for tokenizer in (ours, theirs):
    tokenizer.basic_tokenizer.do_lower_case = False
    tokenizer.wordpiece_tokenizer.unk_token = "[MASK]"
  assert ours.tokenize(text) == theirs.tokenize(text)
  assert ours.tokenize(text)[0] == "[MASK]"


def test_word_spans_split_text_as_the_basic_tokenizer_does():
  text = "Hello,  Mr. O'Neil\tof \u5317\u4eac ($5)!"
  assert [text[start:end] for start, end in tokenization.word_spans(text)] == [
      "Hello", ",", "Mr", ".", "O", "'", "Neil", "of", "\u5317", "\u4eac", "(", "$", "5", ")",
      "!"]
  assert tokenization.word_spans("  \n") == []


def test_word_spans_hold_the_basic_tokens_of_any_text():
  basic_tokenizer = tokenization.BasicTokenizer(do_lower_case=False)
  # Control characters that Python counts as whitespace separate words there; the tokenizer
  # drops them and joins their neighbours.
  python_only_spaces = str.maketrans({char: " " for char in "\x0b\x0c\x1c\x1d\x1e\x1f\x85"})
  for text in read_fixture("corpus.txt") + random_texts(seed=17, count=600):
    words = [text[start:end] for start, end in tokenization.word_spans(text)]
    assert not any(char.isspace() for word in words for char in word), ascii(text)
    assert [token for word in words for token in basic_tokenizer.tokenize(word)] == (
        basic_tokenizer.tokenize(text.translate(python_only_spaces))), ascii(text)
