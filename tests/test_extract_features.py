"""Tests of extract_features.py: parity with the original's output, the real MiniLM model's
features, the input helpers and bad input."""

import json
import model_checks
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

import convert_hf_checkpoint
import script_io
import support
import tensorflow.compat.v1 as tf

FIXTURE_DIR = support.fixture_path("extract_features")
MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
MODEL_CHECKPOINT = support.fixture_path("modeling", "bert_model.ckpt")


@pytest.fixture(scope="module")
def extract_features():
  module = support.load_script("extract_features")
  flags.FLAGS.mark_as_parsed()
  return module


@pytest.fixture(scope="module")
def tokenizer(extract_features):
  return extract_features.tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)


def read_jsonl(path):
  with open(path) as reader:
    return [json.loads(line) for line in reader]


def fixture_flags():
  with open(os.path.join(FIXTURE_DIR, "flags.txt")) as reader:
    return reader.read().split()


# Batches are cut to their longest sequence either way; length-sorted batches come back in order.
@pytest.mark.slow
@pytest.mark.parametrize("speed_flags", [[], ["--batch_by_length=true", "--use_xla=true"]])
def test_matches_the_original_output(tmp_path, speed_flags):
  output_file = str(tmp_path / "features.jsonl")
  result = support.run_script("extract_features", [
      "--input_file=" + os.path.join(FIXTURE_DIR, "input.txt"),
      "--output_file=" + output_file,
      "--vocab_file=" + support.VOCAB_FILE,
      "--bert_config_file=" + MODEL_CONFIG,
      "--init_checkpoint=" + MODEL_CHECKPOINT,
      "--batch_size=8"] + fixture_flags() + speed_flags)
  assert result.returncode == 0, result.stderr
  assert not support.temporary_outputs(str(tmp_path))
  with open(output_file) as reader:
    lines = reader.read().splitlines()
  # Byte for byte what json.dumps writes for the line's contents, as the original's lines are.
  assert [json.dumps(json.loads(line)) for line in lines] == lines

  actual = read_jsonl(output_file)
  expected = read_jsonl(os.path.join(FIXTURE_DIR, "reference.jsonl"))
  assert len(actual) == len(expected) == 20
  for line, reference in zip(actual, expected):
    assert list(line) == ["linex_index", "features"]
    assert line["linex_index"] == reference["linex_index"]
    assert [f["token"] for f in line["features"]] == [f["token"] for f in reference["features"]]
    for feature, reference_feature in zip(line["features"], reference["features"]):
      assert [l["index"] for l in feature["layers"]] == [-1, -2, 0]
      for layer, reference_layer in zip(feature["layers"], reference_feature["layers"]):
        assert layer["index"] == reference_layer["index"]
        np.testing.assert_allclose(layer["values"], reference_layer["values"], atol=1e-5, rtol=0)
  # Values are rounded to 6 decimals, as the original writes them.
  values = actual[0]["features"][0]["layers"][0]["values"]
  assert len(values) == 64
  assert all(round(v, 6) == v for v in values)


def json_value_texts(values):
  """The original's values: json.dumps of round(x, 6) for every x, a row of `values` a string."""
  return [", ".join(json.dumps(round(x, 6)) for x in row.astype(np.float64).tolist())
          for row in values]


def test_rounded_value_texts_are_json_of_round(extract_features):
  rng = np.random.RandomState(0)
  # Magnitudes from 1e-8 to 1e3, then rows where a few reach 1e4 (written value by value).
  random_values = (rng.uniform(-1, 1, (20, 16, 64)) *
                   10**rng.uniform(-8, [[[3]]] * 19 + [[[4]]], (20, 16, 64)))
  # Exact ties, x * 1e6 = k + 0.5: the odd multiples of 1/128 below 1000.
  ties = np.arange(1, 128000, 2) / 128
  # k / 1e6 and its float32 neighbours around the switch to exponent form at 1e-4.
  boundary = np.arange(-200, 201) / 1e6
  special = np.array([
      0.0, -0.0, -1e-7, -4.9e-7, 5e-7, -5e-7, 1.5e-6, 2.5e-6, 2**-21, 9.9995e-5, -9.9995e-5,
      9.95e-5, 9.9949e-5, 1e-4, -1e-4, 1e-8, 0.001, 0.1, 0.5, 1.0, 3.0, -7.25, 10.0, 100.0,
      123.456789, 1.0000005, 999.9999, -999.99994])
  outside = [np.nan, np.inf, -np.inf, 1000.0, -1000.0, 1e4, 3e38]
  matrices = list(random_values) + [
      np.concatenate([ties, -ties]).reshape(-1, 64),
      np.stack([boundary, np.nextafter(boundary.astype(np.float32), np.float32(1)),
                np.nextafter(boundary.astype(np.float32), np.float32(-1))]),
      special.reshape(1, -1),
      # One value outside the records in a row of others, and a row of others alone.
      np.where(np.eye(len(outside) + 1, 8) > 0, np.array([outside + [-1.5]]).T, 0.25),
  ]
  for values in matrices:
    values = values.astype(np.float32)
    assert extract_features.rounded_value_texts(values) == json_value_texts(values)


def test_rounded_value_texts_refuse_float64(extract_features):
  with pytest.raises(TypeError):
    extract_features.rounded_value_texts(np.zeros([2, 4], np.float64))


def test_feature_line_is_json_of_the_original_structure(extract_features):
  tokens = ["[CLS]", 'say "hi"', "back\\slash", "café", "東", "tab\there", "[SEP]"]
  feature = extract_features.InputFeatures(
      unique_id=12, tokens=tokens, input_ids=None, input_mask=None, input_type_ids=None)
  rng = np.random.RandomState(1)
  result = {"unique_id": 12,
            "layer_output_0": rng.randn(9, 16).astype(np.float32),
            "layer_output_1": (rng.randn(9, 16) * 300).astype(np.float32)}
  result["layer_output_1"][2, 3] = 4096.5  # a row written value by value
  result["layer_output_0"][4, 0] = np.nan
  layer_indexes = [-1, 0]
  original = {"linex_index": 12, "features": [
      {"token": token, "layers": [
          {"index": layer_index,
           "values": [round(x, 6) for x in result["layer_output_%d" % j][i].tolist()]}
          for j, layer_index in enumerate(layer_indexes)]}
      for i, token in enumerate(tokens)]}
  assert extract_features.feature_line(feature, result, layer_indexes) == json.dumps(original)


def test_read_examples_splits_pairs_at_the_last_separator(extract_features, tmp_path):
  input_file = tmp_path / "input.txt"
  input_file.write_text("Who was Jim Henson ? ||| Jim Henson was a puppeteer\n"
                        "  one text  \n"
                        "\n"
                        "a ||| b ||| c\n"
                        "no|||spaces")
  examples = extract_features.read_examples(str(input_file))
  assert [(e.unique_id, e.text_a, e.text_b) for e in examples] == [
      (0, "Who was Jim Henson ?", "Jim Henson was a puppeteer"),
      (1, "one text", None),
      (2, "", None),
      (3, "a ||| b", "c"),
      (4, "no|||spaces", None),
  ]


def test_convert_examples_to_features(extract_features, tokenizer):
  examples = [
      extract_features.InputExample(0, "Who was Jim Henson ?", "Jim Henson was a puppeteer"),
      extract_features.InputExample(1, "the quick brown fox jumps over the lazy dog", None),
      extract_features.InputExample(2, "one two three four five six seven", "eight nine"),
  ]
  features = extract_features.convert_examples_to_features(examples, 10, tokenizer)

  pair = features[0]
  # 5 + 6 tokens cut to 7: the longer text (B on a tie) loses its last token, until both fit.
  assert pair.tokens == ["[CLS]", "who", "was", "jim", "henson", "[SEP]", "jim", "henson", "was",
                         "[SEP]"]
  assert pair.input_type_ids == [0] * 6 + [1] * 4
  assert pair.input_ids == tokenizer.convert_tokens_to_ids(pair.tokens)
  assert pair.input_mask == [1] * 10

  single = features[1]
  assert single.tokens == ["[CLS]", "the", "quick", "brown", "fox", "jumps", "over", "the",
                           "lazy", "[SEP]"]
  assert single.input_type_ids == [0] * 10

  truncated = features[2]
  assert truncated.tokens == ["[CLS]", "one", "two", "three", "four", "five", "[SEP]", "eight",
                              "nine", "[SEP]"]

  short = extract_features.convert_examples_to_features(
      [extract_features.InputExample(7, "hello", None)], 6, tokenizer)[0]
  assert short.unique_id == 7
  assert short.tokens == ["[CLS]", "hello", "[SEP]"]
  assert short.input_mask == [1, 1, 1, 0, 0, 0]
  assert short.input_ids[3:] == [0, 0, 0] and short.input_type_ids == [0] * 6


def test_truncate_seq_pair_pops_from_the_longer(extract_features):
  tokens_a, tokens_b = list("abcdef"), list("xy")
  extract_features._truncate_seq_pair(tokens_a, tokens_b, 5)
  assert (tokens_a, tokens_b) == (list("abc"), list("xy"))
  tokens_a, tokens_b = list("ab"), list("xyz")
  extract_features._truncate_seq_pair(tokens_a, tokens_b, 3)
  assert (tokens_a, tokens_b) == (list("ab"), list("x"))  # a tie pops from tokens_b


def test_readme_word_alignment_recipe(extract_features, tokenizer):
  """The README's recipe: the first WordPiece of each word, in the tokens of the joined line."""
  words = ["Jim", "Henson", "was", "a", "puppeteer"]
  wordpieces = ["[CLS]"]
  word_start = []
  for word in words:
    word_start.append(len(wordpieces))
    wordpieces.extend(tokenizer.tokenize(word))
  wordpieces.append("[SEP]")
  assert wordpieces == ["[CLS]", "jim", "henson", "was", "a", "puppet", "##eer", "[SEP]"]
  assert word_start == [1, 2, 3, 4, 5]
  example = extract_features.InputExample(0, " ".join(words), None)
  feature = extract_features.convert_examples_to_features([example], 128, tokenizer)[0]
  assert feature.tokens == wordpieces


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
  """The real pretrained MiniLM, converted to the original layout."""
  output_dir = str(tmp_path_factory.mktemp("minilm") / "original")
  convert_hf_checkpoint.hf_to_original(support.real_model_dir(), output_dir)
  return output_dir


@pytest.mark.slow
def test_real_model_features_place_related_sentences_together(extract_features, minilm_dir,
                                                              tmp_path):
  sentences = [
      "A man is playing a guitar.",
      "Someone plays an acoustic guitar on stage.",
      "A kitten is sleeping on the sofa.",
      "The cat naps on the couch.",
      "The central bank raised interest rates again.",
      "Inflation pushed the bank to increase its rates.",
  ]
  input_file = tmp_path / "input.txt"
  input_file.write_text("\n".join(sentences) + "\n")
  output_file = str(tmp_path / "features.jsonl")
  with flagsaver.flagsaver(
      input_file=str(input_file), output_file=output_file, layers="-1", max_seq_length=32,
      batch_size=4, vocab_file=os.path.join(minilm_dir, "vocab.txt"),
      bert_config_file=os.path.join(minilm_dir, "bert_config.json"),
      init_checkpoint=os.path.join(minilm_dir, "bert_model.ckpt"), do_lower_case=True):
    extract_features.main([])

  lines = read_jsonl(output_file)
  assert [line["linex_index"] for line in lines] == list(range(6))
  assert [f["token"] for f in lines[3]["features"]] == [
      "[CLS]", "the", "cat", "nap", "##s", "on", "the", "couch", ".", "[SEP]"]
  vectors = np.array([np.mean([f["layers"][0]["values"] for f in line["features"]], axis=0)
                      for line in lines])
  assert vectors.shape == (6, 384)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  similarity = vectors @ vectors.T
  for topic in range(3):
    first, second = 2 * topic, 2 * topic + 1
    related = similarity[first, second]
    unrelated = [similarity[first, other] for other in range(6) if other not in (first, second)]
    assert related > 0.5 and related > max(unrelated) + 0.3, similarity


def main_flags(tmp_path, **overrides):
  input_file = tmp_path / "input.txt"
  if not input_file.exists():
    input_file.write_text("Who was Jim Henson ? ||| Jim Henson was a puppeteer\n")
  values = dict(
      input_file=str(input_file), output_file=str(tmp_path / "out.jsonl"),
      vocab_file=support.VOCAB_FILE, bert_config_file=MODEL_CONFIG,
      init_checkpoint=MODEL_CHECKPOINT, layers="-1,-2", max_seq_length=128,
      batch_size=32)
  values.update(overrides)
  return values


@pytest.mark.parametrize("overrides, message", [
    ({"input_file": "/no/such/input.txt"}, "--input_file: no such file: /no/such/input.txt"),
    ({"layers": "-1,two"},
     "--layers must be comma-separated integers like -1,-2,-3,-4, got '-1,two'"),
    ({"layers": ""}, "--layers must be comma-separated integers like -1,-2,-3,-4, got ''"),
    ({"layers": "-1,2"}, "--layers: the model has 2 layers, so 2 is out of range [-2, 1]"),
    ({"layers": "-3"}, "--layers: the model has 2 layers, so -3 is out of range [-2, 1]"),
    ({"max_seq_length": 513},
     "--max_seq_length=513 is longer than the model allows: %s has max_position_embeddings=512"
     % MODEL_CONFIG),
    ({"max_seq_length": 2}, "--max_seq_length=2 leaves no room for [CLS] A [SEP] B [SEP]"),
    ({"batch_size": 0}, "--batch_size=0 must be positive"),
    ({"init_checkpoint": "/no/such/bert_model.ckpt"},
     "--init_checkpoint: no checkpoint at /no/such/bert_model.ckpt"),
    ({"init_checkpoint": MODEL_CHECKPOINT + ".index"},
     "--init_checkpoint: no checkpoint at %s.index; name a checkpoint by the prefix of its "
     "files, e.g. %s" % (MODEL_CHECKPOINT, MODEL_CHECKPOINT)),
    ({"init_checkpoint": MODEL_CHECKPOINT + ".data-00000-of-00001"},
     "--init_checkpoint: no checkpoint at %s.data-00000-of-00001; name a checkpoint by the "
     "prefix of its files, e.g. %s" % (MODEL_CHECKPOINT, MODEL_CHECKPOINT)),
    # A Google release has no "checkpoint" file naming its checkpoint.
    ({"init_checkpoint": os.path.dirname(MODEL_CHECKPOINT)},
     "--init_checkpoint: no checkpoint at %s; name a checkpoint by the prefix of its files, "
     "e.g. %s" % (os.path.dirname(MODEL_CHECKPOINT), MODEL_CHECKPOINT)),
    ({"vocab_file": "/no/such/vocab.txt"}, "--vocab_file: no such file: /no/such/vocab.txt"),
    ({"bert_config_file": "/no/such/bert_config.json"},
     "--bert_config_file: no such file: /no/such/bert_config.json"),
])
def test_bad_flags(extract_features, tmp_path, overrides, message):
  with flagsaver.flagsaver(**main_flags(tmp_path, **overrides)):
    with pytest.raises(script_io.InputError) as error:
      extract_features.main([])
  assert str(error.value) == message
  assert not os.path.exists(str(tmp_path / "out.jsonl"))


def test_a_folder_naming_its_latest_checkpoint_is_one(tmp_path):
  model_checks.check_init_checkpoint(None)
  tf.train.update_checkpoint_state(str(tmp_path), MODEL_CHECKPOINT)
  model_checks.check_init_checkpoint(str(tmp_path))
  os.remove(str(tmp_path / "checkpoint"))
  with pytest.raises(script_io.InputError, match=r"^--init_checkpoint: no checkpoint at \S+$"):
    model_checks.check_init_checkpoint(str(tmp_path))


@pytest.mark.parametrize("vocab, message", [
    (["[PAD]", "the"], r"^--vocab_file: Vocabulary file \S+vocab.txt has no \[UNK\] line"),
    (b"[UNK]\n\xe9t\xe9\n", r"^--vocab_file: Cannot read vocabulary file \S+vocab.txt: "),
])
def test_vocab_that_is_no_wordpiece_vocabulary(extract_features, tmp_path, vocab, message):
  vocab_file = tmp_path / "vocab.txt"
  if isinstance(vocab, bytes):
    vocab_file.write_bytes(vocab)
  else:
    vocab_file.write_text("\n".join(vocab) + "\n")
  with flagsaver.flagsaver(**main_flags(tmp_path, vocab_file=str(vocab_file))):
    with pytest.raises(script_io.InputError, match=message) as error:
      extract_features.main([])
  assert "\n" not in str(error.value)


def test_casing_contradicting_a_google_checkpoint(extract_features, tmp_path):
  checkpoint = "/models/cased_L-12_H-768_A-12/bert_model.ckpt"
  with flagsaver.flagsaver(**main_flags(tmp_path, init_checkpoint=checkpoint)):
    with pytest.raises(script_io.InputError,
                       match=r"^`--do_lower_case=True` does not fit `--init_checkpoint="):
      extract_features.main([])


def test_empty_input_file_gives_an_empty_output_as_the_original(extract_features, tmp_path):
  (tmp_path / "input.txt").write_text("")
  with flagsaver.flagsaver(**main_flags(tmp_path, layers="-1")):
    extract_features.main([])
  assert (tmp_path / "out.jsonl").read_text() == ""


def test_vocab_larger_than_the_model(extract_features, tmp_path):
  config = dict(json.load(open(MODEL_CONFIG)), vocab_size=1000)
  config_file = tmp_path / "bert_config.json"
  config_file.write_text(json.dumps(config))
  with flagsaver.flagsaver(**main_flags(tmp_path, bert_config_file=str(config_file))):
    with pytest.raises(script_io.InputError,
                       match="has 30522 tokens but --bert_config_file .* has vocab_size=1000"):
      extract_features.main([])


@pytest.mark.slow
def test_bad_input_is_one_line_on_the_command_line(tmp_path):
  result = support.run_script("extract_features", [
      "--input_file=" + str(tmp_path / "missing.txt"), "--output_file=" + str(tmp_path / "o"),
      "--vocab_file=" + support.VOCAB_FILE, "--bert_config_file=" + MODEL_CONFIG,
      "--init_checkpoint=" + MODEL_CHECKPOINT, "--layers=-1"])
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      "ERROR: --input_file: no such file: %s" % (tmp_path / "missing.txt"))
