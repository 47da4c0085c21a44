"""Tests of create_pretraining_data.py.

The strongest evidence is the original itself: the reference TFRecords of tests/fixtures,
and the installed original package (`bert.create_pretraining_data`, bert-tensorflow 1.0.4)
called as an oracle on our own sample_text.txt with other seeds and flags.
"""

import concurrent.futures
import importlib
import os
import random
import sys

from absl import flags
from absl.testing import flagsaver
import pytest
import script_io
import support
import tensorflow.compat.v1 as tf
import tokenization

FIXTURE_DIR = support.fixture_path("pretraining_data")
FIXTURE_INPUT = os.path.join(FIXTURE_DIR, "input.txt")
SAMPLE_TEXT = os.path.join(support.REPO_DIR, "sample_text.txt")

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


@pytest.fixture(scope="module")
def original():
  """The original script's module, its flags removed so that ours can be defined after it."""
  ours = "create_pretraining_data"
  if ours in sys.modules:
    for flag in flags.FLAGS.get_flags_for_module(ours):
      delattr(flags.FLAGS, flag.name)
    del sys.modules[ours]
  module = importlib.import_module("bert.create_pretraining_data")
  for flag in flags.FLAGS.get_flags_for_module(module.__name__):
    delattr(flags.FLAGS, flag.name)
  return module


@pytest.fixture(scope="module")
def cpd(original):  # pylint: disable=redefined-outer-name,unused-argument
  return support.load_script("create_pretraining_data")


@pytest.fixture(scope="module")
def tokenizer(cpd):  # pylint: disable=redefined-outer-name
  return tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)


def fixture_flags(output_name):
  """The flags flags.txt gives for the reference file `output_name`, as a list."""
  with open(os.path.join(FIXTURE_DIR, "flags.txt")) as reader:
    for line in reader:
      name, _, line_flags = line.partition(":")
      if name == output_name:
        return line_flags.split()
  raise KeyError(output_name)


def run_main(cpd, args):  # pylint: disable=redefined-outer-name
  """Runs the script's main in this process with the command-line flags `args`."""
  with flagsaver.flagsaver():
    flags.FLAGS(["create_pretraining_data"] + list(args))
    cpd.main([])


def records(path):
  return list(tf.io.tf_record_iterator(path))


def parsed_examples(path):
  """The examples of a TFRecord file as dictionaries feature name -> list of values."""
  examples = []
  for record in records(path):
    features = tf.train.Example.FromString(record).features.feature
    assert sorted(features) == sorted(FEATURE_NAMES)
    examples.append({name: list(features[name].int64_list.value or
                                features[name].float_list.value) for name in FEATURE_NAMES})
  return examples


def assert_same_examples(actual_path, expected_path, compare_bytes=True):
  """Compares two TFRecord files example by example, feature by feature, then byte by byte.

  With compare_bytes=False, the whole parsed Examples are compared instead of their bytes: for
  files of the original package where protobuf does not write the original's bytes (see
  support.PROTOBUF_WRITES_THE_ORIGINAL_ORDER).
  """
  actual, expected = parsed_examples(actual_path), parsed_examples(expected_path)
  assert len(actual) == len(expected)
  for index, (actual_example, expected_example) in enumerate(zip(actual, expected)):
    for name in FEATURE_NAMES:
      assert actual_example[name] == expected_example[name], (index, name)
  if compare_bytes:
    assert records(actual_path) == records(expected_path)
  else:
    assert ([tf.train.Example.FromString(record) for record in records(actual_path)] ==
            [tf.train.Example.FromString(record) for record in records(expected_path)])


def assert_same_examples_as_the_original_package(actual_path, expected_path):
  """assert_same_examples for a file the installed original package wrote."""
  assert_same_examples(actual_path, expected_path,
                       compare_bytes=support.PROTOBUF_WRITES_THE_ORIGINAL_ORDER)


# The reference outputs of the original.


@pytest.mark.slow
def test_command_line_run_equals_the_reference(tmp_path):
  output_file = str(tmp_path / "examples.tfrecord")
  result = support.run_script("create_pretraining_data", [
      "--input_file=" + FIXTURE_INPUT, "--output_file=" + output_file,
      "--vocab_file=" + support.VOCAB_FILE] + fixture_flags("reference.tfrecord"))
  assert result.returncode == 0, result.stderr[-3000:]
  assert_same_examples(output_file, os.path.join(FIXTURE_DIR, "reference.tfrecord"))
  assert sorted(os.listdir(tmp_path)) == ["examples.tfrecord"]
  assert "Wrote 550 total instances" in result.stderr


def test_whole_word_masking_equals_the_later_reference(cpd, tmp_path):
  """reference_wwm.tfrecord comes from Google's later script, the one with --do_whole_word_mask.

  With the flags of flags.txt (whole word masking on, 64 positions, 10 predictions,
  short_seq_prob 0.2, seed 777, dupe factor 3) our output must equal it byte for byte.
  """
  output_file = str(tmp_path / "examples.tfrecord")
  fixture_args = fixture_flags("reference_wwm.tfrecord")
  assert "--do_whole_word_mask=True" in fixture_args
  run_main(cpd, ["--input_file=" + FIXTURE_INPUT, "--output_file=" + output_file,
                 "--vocab_file=" + support.VOCAB_FILE] + fixture_args)
  assert_same_examples(output_file, os.path.join(FIXTURE_DIR, "reference_wwm.tfrecord"))


def test_whole_word_reference_differs_from_per_piece_masking(cpd, tmp_path):
  """The same flags without whole word masking give other examples: the fixture checks the flag."""
  output_file = str(tmp_path / "examples.tfrecord")
  fixture_args = [arg for arg in fixture_flags("reference_wwm.tfrecord")
                  if not arg.startswith("--do_whole_word_mask")]
  run_main(cpd, ["--input_file=" + FIXTURE_INPUT, "--output_file=" + output_file,
                 "--vocab_file=" + support.VOCAB_FILE] + fixture_args)
  assert records(output_file) != records(os.path.join(FIXTURE_DIR, "reference_wwm.tfrecord"))


# The original package as an oracle.


ORACLE_CASES = {
    # name: (input files, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob,
    #        max_predictions_per_seq, random_seed)
    "defaults": ([SAMPLE_TEXT], 128, 2, 0.1, 0.15, 20, 12345),
    "short": ([SAMPLE_TEXT], 12, 1, 0.5, 0.3, 3, 1),
    "shortest": ([SAMPLE_TEXT], 5, 1, 0.1, 0.15, 20, 7),
    "two_files": ([SAMPLE_TEXT, FIXTURE_INPUT], 64, 3, 0.2, 0.2, 10, 99),
    "no_predictions": ([SAMPLE_TEXT], 40, 1, 0.0, 0.15, 0, 3),
    "many_predictions": ([SAMPLE_TEXT], 256, 1, 0.3, 0.5, 200, 5),
}


def command_line(case, output_files):
  input_files, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob, \
      max_predictions_per_seq, random_seed = case
  return ["--input_file=" + ",".join(input_files), "--output_file=" + ",".join(output_files),
          "--vocab_file=" + support.VOCAB_FILE, "--max_seq_length=%d" % max_seq_length,
          "--dupe_factor=%d" % dupe_factor, "--short_seq_prob=%r" % short_seq_prob,
          "--masked_lm_prob=%r" % masked_lm_prob,
          "--max_predictions_per_seq=%d" % max_predictions_per_seq,
          "--random_seed=%d" % random_seed]


def make_instances(module, tokenizer, case, **kwargs):  # pylint: disable=redefined-outer-name
  """Runs `module.create_training_instances` on `case`; returns its instances and rng."""
  input_files, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob, \
      max_predictions_per_seq, random_seed = case
  rng = random.Random(random_seed)
  instances = module.create_training_instances(
      input_files, tokenizer, max_seq_length, dupe_factor, short_seq_prob, masked_lm_prob,
      max_predictions_per_seq, rng, **kwargs)
  return instances, rng


@pytest.mark.parametrize("case_name", sorted(ORACLE_CASES))
def test_instances_and_files_equal_the_originals(original, cpd, tokenizer, tmp_path,
                                                 case_name):
  """The public functions and the script give what the original's functions give.

  Both sides use our tokenizer (its parity with the original's is tokenization's test), so
  that this compares the instance and example code alone.
  """
  case = ORACLE_CASES[case_name]
  expected, expected_rng = make_instances(original, tokenizer, case)
  actual, actual_rng = make_instances(cpd, tokenizer, case)
  assert expected
  assert [str(instance) for instance in actual] == [str(instance) for instance in expected]
  assert actual_rng.getstate() == expected_rng.getstate()

  max_seq_length, max_predictions_per_seq = case[1], case[5]
  expected_files = [str(tmp_path / ("expected-%d.tfrecord" % i)) for i in range(2)]
  original.write_instance_to_example_files(expected, tokenizer, max_seq_length,
                                           max_predictions_per_seq, expected_files)
  written_files = [str(tmp_path / ("written-%d.tfrecord" % i)) for i in range(2)]
  cpd.write_instance_to_example_files(actual, tokenizer, max_seq_length,
                                      max_predictions_per_seq, written_files)
  script_files = [str(tmp_path / ("script-%d.tfrecord" % i)) for i in range(2)]
  run_main(cpd, command_line(case, script_files))
  for expected_file, written_file, script_file in zip(expected_files, written_files,
                                                      script_files):
    assert_same_examples_as_the_original_package(written_file, expected_file)
    assert_same_examples_as_the_original_package(script_file, expected_file)
  # Dealt in turn: the first file holds examples 0, 2, 4, ...
  assert len(records(expected_files[0])) == (len(expected) + 1) // 2


def test_writer_encodes_unusual_instances_as_the_original(original, cpd, tokenizer, tmp_path):
  """Empty prediction lists, more predictions than the maximum, large and negative ids."""
  instances = [
      cpd.TrainingInstance(["[CLS]", "a", "[SEP]", "b", "[SEP]"], [0, 0, 0, 1, 1], [], [],
                           False),
      cpd.TrainingInstance(["[CLS]", "the", "[SEP]", "##s", "[SEP]"], [0, 0, 0, 300, -2],
                           [1, 2, 3, 4], ["the", "[SEP]", "##s", "[SEP]"], True),
  ]
  for max_seq_length, max_predictions_per_seq in ((5, 2), (200, 0), (8, 20)):
    expected_file = str(tmp_path / "expected.tfrecord")
    original.write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                             max_predictions_per_seq, [expected_file])
    actual_file = str(tmp_path / "actual.tfrecord")
    cpd.write_instance_to_example_files(instances, tokenizer, max_seq_length,
                                        max_predictions_per_seq, [actual_file])
    assert_same_examples_as_the_original_package(actual_file, expected_file)


def test_instances_from_document_equal_the_originals(original, cpd, tokenizer):
  with open(SAMPLE_TEXT, encoding="utf-8") as reader:
    documents = [[tokenizer.tokenize(line) for line in text.split("\n") if line.strip()]
                 for text in reader.read().split("\n\n")]
  vocab_words = list(tokenizer.vocab.keys())
  for seed, max_seq_length in ((0, 128), (1, 9), (2, 30)):
    expected_rng, actual_rng = random.Random(seed), random.Random(seed)
    for document_index in range(len(documents)):
      args = (documents, document_index, max_seq_length, 0.3, 0.2, 8, vocab_words)
      expected = original.create_instances_from_document(*args, rng=expected_rng)
      actual = cpd.create_instances_from_document(*args, rng=actual_rng)
      assert [str(x) for x in actual] == [str(x) for x in expected]
    assert actual_rng.getstate() == expected_rng.getstate()


def random_tokens(rng, length):
  pieces = ["the", "##s", "[CLS]", "[SEP]", "run", "##ning", "a", "##b", "##c", "dog"]
  return [rng.choice(pieces) for _ in range(length)]


def test_masked_lm_predictions_equal_the_originals(original, cpd):
  vocab_words = ["[PAD]", "[UNK]", "[MASK]", "x", "##y", "z"]
  case_rng = random.Random(0)
  for _ in range(300):
    tokens = random_tokens(case_rng, case_rng.randint(0, 60))
    args = (tokens, case_rng.choice([0.0, 0.15, 0.5, 1.0]), case_rng.randint(0, 25),
            vocab_words)
    seed = case_rng.random()
    expected_rng, actual_rng = random.Random(seed), random.Random(seed)
    expected = original.create_masked_lm_predictions(*args, rng=expected_rng)
    actual = cpd.create_masked_lm_predictions(*args, rng=actual_rng)
    assert actual == expected
    assert actual_rng.getstate() == expected_rng.getstate()
    assert tokens == args[0]  # Not modified in place.


def test_truncate_seq_pair_equals_the_originals(original, cpd):
  case_rng = random.Random(1)
  for _ in range(500):
    tokens_a = list(range(case_rng.randint(1, 40)))
    tokens_b = list(range(100, 100 + case_rng.randint(1, 40)))
    max_num_tokens = case_rng.randint(2, 80)
    seed = case_rng.random()
    expected_a, expected_b, expected_rng = list(tokens_a), list(tokens_b), random.Random(seed)
    original.truncate_seq_pair(expected_a, expected_b, max_num_tokens, expected_rng)
    actual_rng = random.Random(seed)
    cpd.truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, actual_rng)
    assert (tokens_a, tokens_b) == (expected_a, expected_b)
    assert actual_rng.getstate() == expected_rng.getstate()


def test_shuffle_is_random_shuffle(cpd):
  for length in list(range(40)) + [127, 128, 129, 1000]:
    for seed in range(3):
      expected, actual = list(range(length)), list(range(length))
      expected_rng, actual_rng = random.Random(seed), random.Random(seed)
      expected_rng.shuffle(expected)
      cpd._shuffle(actual, actual_rng)  # pylint: disable=protected-access
      assert actual == expected
      assert actual_rng.getstate() == expected_rng.getstate()


# Whole word masking: the original's google-research/bert version masks all the WordPieces of
# a word together; bert-tensorflow 1.0.4 predates it, so the oracle is the original pipeline
# with its masking function replaced by this reference.


def whole_word_masking_reference(tokens, masked_lm_prob, max_predictions_per_seq,
                                 vocab_words, rng):
  """Whole word masking written plainly: words are a first WordPiece and its ## pieces."""
  words = []
  for index, token in enumerate(tokens):
    if token in ("[CLS]", "[SEP]"):
      continue
    if words and token.startswith("##"):
      words[-1].append(index)
    else:
      words.append([index])
  rng.shuffle(words)
  budget = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
  output_tokens = list(tokens)
  masked = []
  for word in words:
    if len(masked) >= budget:
      break
    if len(masked) + len(word) > budget:
      continue  # A word that does not fit is skipped; a shorter one later may fit.
    for index in word:
      if rng.random() < 0.8:
        output_tokens[index] = "[MASK]"
      elif rng.random() < 0.5:
        output_tokens[index] = tokens[index]
      else:
        output_tokens[index] = vocab_words[rng.randint(0, len(vocab_words) - 1)]
      masked.append(index)
  masked.sort()
  return output_tokens, masked, [tokens[index] for index in masked]


def words_are_masked_whole(example, inv_vocab):
  """Whether each word of an example is masked in all its WordPieces or in none.

  Returns the number of words of several WordPieces that are masked.
  """
  num_tokens = sum(example["input_mask"])
  num_predictions = int(sum(example["masked_lm_weights"]))
  masked = dict(zip(example["masked_lm_positions"][:num_predictions],
                    example["masked_lm_ids"][:num_predictions]))
  tokens = [inv_vocab[masked.get(i, example["input_ids"][i])] for i in range(num_tokens)]
  words = []
  for index, token in enumerate(tokens):
    if token in ("[CLS]", "[SEP]"):
      continue
    if words and token.startswith("##"):
      words[-1].append(index)
    else:
      words.append([index])
  for word in words:
    assert len({index in masked for index in word}) == 1, (tokens, word, sorted(masked))
  return sum(1 for word in words if len(word) > 1 and word[0] in masked)


@pytest.mark.parametrize("case_name", ["defaults", "two_files", "short"])
def test_whole_word_masking_equals_the_reference(original, cpd, tokenizer, tmp_path,
                                                 monkeypatch, case_name):
  monkeypatch.setattr(original, "create_masked_lm_predictions", whole_word_masking_reference)
  case = ORACLE_CASES[case_name]
  expected, expected_rng = make_instances(original, tokenizer, case)
  actual, actual_rng = make_instances(cpd, tokenizer, case, do_whole_word_mask=True)
  assert [str(instance) for instance in actual] == [str(instance) for instance in expected]
  assert actual_rng.getstate() == expected_rng.getstate()

  expected_file = str(tmp_path / "expected.tfrecord")
  original.write_instance_to_example_files(expected, tokenizer, case[1], case[5],
                                           [expected_file])
  script_file = str(tmp_path / "script.tfrecord")
  run_main(cpd, command_line(case, [script_file]) + ["--do_whole_word_mask=True"])
  assert_same_examples_as_the_original_package(script_file, expected_file)
  whole_words_masked = sum(words_are_masked_whole(example, tokenizer.inv_vocab)
                           for example in parsed_examples(script_file))
  assert whole_words_masked > 0


# Logging, several files, bad input.


def test_examples_and_progress_are_logged(cpd, tokenizer, tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(cpd, "_PROGRESS_EVERY", 100)
  caplog.set_level("INFO", logger="tensorflow")
  run_main(cpd, ["--input_file=" + SAMPLE_TEXT, "--dupe_factor=2",
                 "--output_file=%s" % (tmp_path / "examples.tfrecord"),
                 "--vocab_file=" + support.VOCAB_FILE])
  messages = [record.getMessage() for record in caplog.records]
  # As the original: the first 20 examples in readable form, each feature on a line.
  assert messages.count("*** Example ***") == 20
  first = messages.index("*** Example ***")
  example = parsed_examples(str(tmp_path / "examples.tfrecord"))[0]
  tokens = tokenizer.convert_ids_to_tokens(example["input_ids"][:sum(example["input_mask"])])
  assert messages[first + 1] == "tokens: " + " ".join(tokens)
  assert messages[first + 2:first + 9] == [
      "%s: %s" % (name, " ".join(str(value) for value in example[name]))
      for name in FEATURE_NAMES]
  assert "Read 100 lines, 8 documents so far" in messages
  assert "Read 261 lines: 22 documents" in messages
  assert any(message.startswith("Pass 2 of 2 over the documents: ") for message in messages)
  assert "Wrote 100 instances" in messages
  total = len(records(str(tmp_path / "examples.tfrecord")))
  assert "Wrote %d total instances" % total in messages


def write_text(path, text, encoding="utf-8"):
  with open(path, "w", encoding=encoding) as writer:
    writer.write(text)
  return str(path)


def write_vocab(path, tokens):
  return write_text(path, "".join(token + "\n" for token in tokens))


# Each bad input the issue names, run as a user would. The runs are started together, since
# most of each is the start-up of TensorFlow.
COMMAND_LINE_ERRORS = {
    # name: (flags, in "{tmp}" the test's folder; fragments of the error line)
    "glob_that_matches_nothing": (
        ["--input_file=%s,{tmp}/shards/*.txt" % SAMPLE_TEXT],
        ["--input_file: no file matches", "/shards/*.txt"]),
    "vocabulary_without_the_special_tokens": (
        ["--vocab_file={tmp}/vocab.txt"], ["--vocab_file", "/vocab.txt", "[SEP] or [MASK]"]),
    "max_seq_length_too_short_for_two_segments": (
        ["--max_seq_length=4"], ["--max_seq_length=4", "at least 5"]),
}


@pytest.fixture(scope="module")
def command_line_errors(tmp_path_factory):
  """Runs the script once per entry of COMMAND_LINE_ERRORS; returns (result, output folder)."""
  folder = tmp_path_factory.mktemp("bad_input")
  write_text(folder / "blank.txt", "\n  \n\t\n")
  write_vocab(folder / "vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "the", "##s"])

  def run(name):
    output_dir = folder / name
    os.makedirs(output_dir)
    args = {"--input_file": SAMPLE_TEXT, "--output_file": str(output_dir / "out.tfrecord"),
            "--vocab_file": support.VOCAB_FILE}
    args.update(arg.format(tmp=folder).split("=", 1) for arg in COMMAND_LINE_ERRORS[name][0])
    result = support.run_script("create_pretraining_data",
                                ["%s=%s" % item for item in args.items()])
    return result, output_dir

  with concurrent.futures.ThreadPoolExecutor(len(COMMAND_LINE_ERRORS)) as pool:
    return dict(zip(COMMAND_LINE_ERRORS, pool.map(run, COMMAND_LINE_ERRORS)))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMAND_LINE_ERRORS))
def test_bad_input_is_one_error_line(command_line_errors, name):
  result, output_dir = command_line_errors[name]
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("ERROR: "), last_line
  for fragment in COMMAND_LINE_ERRORS[name][1]:
    assert fragment in last_line, last_line
  assert os.listdir(output_dir) == []


def test_corpus_without_text_gives_empty_files_as_the_original(cpd, tmp_path):
  blank = write_text(tmp_path / "blank.txt", "\n  \n\t\n")
  output_file = str(tmp_path / "out.tfrecord")
  run_main(cpd, ["--input_file=" + blank, "--output_file=" + output_file,
                 "--vocab_file=" + support.VOCAB_FILE])
  assert records(output_file) == []


@pytest.mark.parametrize("args, fragments", [
    (["--output_file={tmp}/no/such/dir/examples.tfrecord"],
     ["--output_file", "no/such/dir/examples.tfrecord", "cannot be written: no folder"]),
    (["--output_file=/proc/examples.tfrecord"],
     ["--output_file=/proc/examples.tfrecord cannot be written: cannot write a file in /proc"]),
    (["--input_file={tmp}/latin1.txt"], ["latin1.txt, line 2, is not UTF-8 text"]),
    (["--vocab_file={tmp}/no_vocab.txt"], ["--vocab_file", "no_vocab.txt"]),
    (["--vocab_file={tmp}/no_unk.txt"], ["--vocab_file", "no_unk.txt", "[UNK]"]),
    (["--vocab_file={tmp}/latin1.txt"], ["--vocab_file: Cannot read vocabulary file",
                                         "latin1.txt"]),
])
def test_other_bad_input(cpd, tmp_path, args, fragments):
  write_text(tmp_path / "latin1.txt", "Plain first line.\nCaf\u00e9 au lait.\n", "latin-1")
  write_vocab(tmp_path / "no_unk.txt", ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "the"])
  defaults = {"--input_file": SAMPLE_TEXT, "--output_file": str(tmp_path / "out.tfrecord"),
              "--vocab_file": support.VOCAB_FILE}
  defaults.update(arg.format(tmp=tmp_path).split("=", 1) for arg in args)
  with pytest.raises(script_io.InputError) as error:
    run_main(cpd, ["%s=%s" % item for item in defaults.items()])
  for fragment in fragments:
    assert fragment in str(error.value)
  assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "out.tfrecord")
