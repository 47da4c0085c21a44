"""Tests of run_classifier.py: GLUE processors, features, parity with the original, fine-tuning
(a tiny random model, STS-B regression, the real pretrained model, micro-batches under a
distribution strategy), bad input."""

import math
import os
import random

import numpy as np
import pytest
import script_io
import support
import tensorflow.compat.v1 as tf
import tokenization

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
CLASSIFIER_DATA = support.fixture_path("classifier", "data")
FINETUNED_CHECKPOINT = support.fixture_path("classifier", "finetuned.ckpt")

PARITY_FLAGS = [
    "--task_name=MRPC",
    "--data_dir=" + CLASSIFIER_DATA,
    "--max_seq_length=64",
    "--do_eval=true",
    "--do_predict=true",
    "--init_checkpoint=" + FINETUNED_CHECKPOINT,
    "--eval_batch_size=8",
    "--predict_batch_size=8",
    "--bert_config_file=" + MODEL_CONFIG,
    "--vocab_file=" + support.VOCAB_FILE,
]


@pytest.fixture
def rc():
  """The run_classifier module, with its flags defined."""
  return support.load_script("run_classifier")


def run_classifier(args):
  """Runs run_classifier.py as a user would; fails the test, showing its output, if it fails."""
  result = support.run_script("run_classifier", args)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def read_results_file(path):
  """Returns the `name = value` lines of an eval results file as a dict of name -> float."""
  results = {}
  with open(path) as reader:
    for line in reader:
      name, value = line.rstrip("\n").split(" = ")
      results[name] = float(value)
  return results


def read_eval_results(output_dir):
  """Returns eval_results.txt of `output_dir` as a dict of name -> float."""
  return read_results_file(os.path.join(output_dir, "eval_results.txt"))


REFERENCE_EVAL_RESULTS = read_results_file(
    support.fixture_path("classifier", "reference_eval_results.txt"))


def read_test_results(output_dir):
  """Returns test_results.tsv of `output_dir` as a [num_examples, num_columns] array."""
  with open(os.path.join(output_dir, "test_results.tsv")) as reader:
    return np.array([[float(x) for x in line.rstrip("\n").split("\t")] for line in reader])


def write_files(directory, files):
  """Writes {relative path: list of rows (lists of columns)} as TSV files under `directory`."""
  for relative_path, rows in files.items():
    path = os.path.join(directory, relative_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as writer:
      for row in rows:
        writer.write("\t".join(row) + "\n")


# ------------------------------------------------------------------------------------------------
# Processors, each on small files in the layout of the real data set.

MNLI_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2"]
MNLI_TRAIN = [
    MNLI_HEADER + ["label1", "gold_label"],
    ["0", "31193", "31193n", "government", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
     "Conceptually cream skimming has two basic dimensions.",
     "Product and geography are what make cream skimming work.", "neutral", "neutral"],
]
MNLI_DEV = [
    MNLI_HEADER + ["label1", "label2", "label3", "label4", "label5", "gold_label"],
    ["7", "63735", "63735n", "slate", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
     "The new rights are nice enough", "Everyone really likes the newest benefits",
     "neutral", "entailment", "neutral", "neutral", "neutral", "neutral"],
]
MNLI_TEST = [
    MNLI_HEADER,
    ["12", "31193", "31193n", "government", "( a )", "( b )", "(ROOT a)", "(ROOT b)",
     "Hierbas, ans seco, ans dulce, and frigola are just a few names.",
     "Hierbas is a name worth looking out for."],
]
XNLI_DEV_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID",
                   "pairID", "genre", "label1"]

# task name -> (files under data_dir, {set: [(guid, text_a, text_b, label)]}).
PROCESSOR_CASES = {
    "MRPC": (
        {"train.tsv": [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                       ["1", "702876", "702977", "Amrozi accused his brother.",
                        "Referring to him, Amrozi accused his brother."]],
         "dev.tsv": [["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                     ["0", "1", "2", "He said so.", "She did not."],
                     ["1", "3", "4", "It rained.", "There was rain."]],
         "test.tsv": [["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                      ["0", "1089874", "1089925", "PCCW's chief will leave.", "He leaves."]]},
        {"train": [("train-1", "Amrozi accused his brother.",
                    "Referring to him, Amrozi accused his brother.", "1")],
         "dev": [("dev-1", "He said so.", "She did not.", "0"),
                 ("dev-2", "It rained.", "There was rain.", "1")],
         "test": [("test-1", "PCCW's chief will leave.", "He leaves.", "0")]}),
    "CoLA": (
        {"train.tsv": [["gj04", "1", "", "Our friends won't buy this analysis."],
                       ["gj04", "0", "*", "They drank the pub."]],
         "dev.tsv": [["gj04", "1", "", "The sailors rode the breeze clear of the rocks."]],
         "test.tsv": [["index", "sentence"], ["0", "Bill whistled past the house."]]},
        {"train": [("train-0", "Our friends won't buy this analysis.", None, "1"),
                   ("train-1", "They drank the pub.", None, "0")],
         "dev": [("dev-0", "The sailors rode the breeze clear of the rocks.", None, "1")],
         "test": [("test-1", "Bill whistled past the house.", None, "0")]}),
    "MNLI": (
        {"train.tsv": MNLI_TRAIN, "dev_matched.tsv": MNLI_DEV, "test_matched.tsv": MNLI_TEST},
        {"train": [("train-0", "Conceptually cream skimming has two basic dimensions.",
                    "Product and geography are what make cream skimming work.", "neutral")],
         "dev": [("dev_matched-7", "The new rights are nice enough",
                  "Everyone really likes the newest benefits", "neutral")],
         "test": [("test-12", "Hierbas, ans seco, ans dulce, and frigola are just a few names.",
                   "Hierbas is a name worth looking out for.", "contradiction")]}),
    "mnli_mismatched": (
        {"train.tsv": MNLI_TRAIN, "dev_mismatched.tsv": MNLI_DEV,
         "test_mismatched.tsv": MNLI_TEST},
        {"train": [("train-0", "Conceptually cream skimming has two basic dimensions.",
                    "Product and geography are what make cream skimming work.", "neutral")],
         "dev": [("dev_mismatched-7", "The new rights are nice enough",
                  "Everyone really likes the newest benefits", "neutral")],
         "test": [("test-12", "Hierbas, ans seco, ans dulce, and frigola are just a few names.",
                   "Hierbas is a name worth looking out for.", "contradiction")]}),
    "SST-2": (
        {"train.tsv": [["sentence", "label"], ["hide new secretions ", "0"]],
         "dev.tsv": [["sentence", "label"], ["it 's a charming journey . ", "1"]],
         "test.tsv": [["index", "sentence"], ["0", "uneasy mishmash ."]]},
        {"train": [("train-1", "hide new secretions ", None, "0")],
         "dev": [("dev-1", "it 's a charming journey . ", None, "1")],
         "test": [("test-0", "uneasy mishmash .", None, "0")]}),
    "STS-B": (
        {"train.tsv": [["index", "genre", "filename", "year", "old_index", "source1", "source2",
                        "sentence1", "sentence2", "score"],
                       ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
                        "A plane is taking off.", "An air plane is taking off.", "5.000"]],
         "dev.tsv": [["index", "genre", "filename", "year", "old_index", "source1", "source2",
                      "sentence1", "sentence2", "score"],
                     ["3", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
                      "A man is playing a flute.", "A man is eating.", "0.8"]],
         "test.tsv": [["index", "genre", "filename", "year", "old_index", "source1", "source2",
                       "sentence1", "sentence2"],
                      ["5", "main-news", "headlines", "2015", "0001", "none", "none",
                       "Rain hits the city.", "The city sees rain."]]},
        {"train": [("train-0", "A plane is taking off.", "An air plane is taking off.",
                    "5.000")],
         "dev": [("dev-3", "A man is playing a flute.", "A man is eating.", "0.8")],
         "test": [("test-5", "Rain hits the city.", "The city sees rain.", "0")]}),
    "QQP": (
        {"train.tsv": [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                       ["133273", "213221", "213222", "How is the life of a math student?",
                        "Which level of preparation is enough?", "0"]],
         "dev.tsv": [["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                     ["40", "81", "82", "Why do we dream?", "What makes us dream?", "1"]],
         "test.tsv": [["id", "question1", "question2"],
                      ["0", "Why do rockets look white?", "Why are rockets white?"]]},
        {"train": [("train-133273", "How is the life of a math student?",
                    "Which level of preparation is enough?", "0")],
         "dev": [("dev-40", "Why do we dream?", "What makes us dream?", "1")],
         "test": [("test-0", "Why do rockets look white?", "Why are rockets white?", "0")]}),
    "QNLI": (
        {"train.tsv": [["index", "question", "sentence", "label"],
                       ["0", "When did it start?", "It started in 1990.", "entailment"]],
         "dev.tsv": [["index", "question", "sentence", "label"],
                     ["1", "Who won?", "The weather was fine.", "not_entailment"]],
         "test.tsv": [["index", "question", "sentence"],
                      ["2", "What is it?", "It is a ship."]]},
        {"train": [("train-0", "When did it start?", "It started in 1990.", "entailment")],
         "dev": [("dev-1", "Who won?", "The weather was fine.", "not_entailment")],
         "test": [("test-2", "What is it?", "It is a ship.", "entailment")]}),
    "RTE": (
        {"train.tsv": [["index", "sentence1", "sentence2", "label"],
                       ["0", "No weapons were found.", "Weapons were found.", "not_entailment"]],
         "dev.tsv": [["index", "sentence1", "sentence2", "label"],
                     ["4", "Paris is in France.", "France has Paris.", "entailment"]],
         "test.tsv": [["index", "sentence1", "sentence2"],
                      ["9", "It snowed.", "There was snow."]]},
        {"train": [("train-0", "No weapons were found.", "Weapons were found.",
                    "not_entailment")],
         "dev": [("dev-4", "Paris is in France.", "France has Paris.", "entailment")],
         "test": [("test-9", "It snowed.", "There was snow.", "entailment")]}),
    "WNLI": (
        {"train.tsv": [["index", "sentence1", "sentence2", "label"],
                       ["0", "I stuck a pin through a carrot.", "The carrot had a hole.", "1"]],
         "dev.tsv": [["index", "sentence1", "sentence2", "label"],
                     ["3", "John could not see the stage.", "The stage was short.", "0"]],
         "test.tsv": [["index", "sentence1", "sentence2"],
                      ["6", "The cat sat on the mat.", "The mat was sat on."]]},
        {"train": [("train-0", "I stuck a pin through a carrot.", "The carrot had a hole.",
                    "1")],
         "dev": [("dev-3", "John could not see the stage.", "The stage was short.", "0")],
         "test": [("test-6", "The cat sat on the mat.", "The mat was sat on.", "0")]}),
    "XNLI": (
        {"multinli/multinli.train.zh.tsv": [["premise", "hypo", "label"],
                                            ["他说", "他没说", "contradictory"],
                                            ["天很好", "天气好", "entailment"]],
         "xnli.dev.tsv": [XNLI_DEV_HEADER,
                          ["en", "neutral", "", "", "", "", "He came.", "He ran.", "1", "1",
                           "facetoface", "neutral"],
                          ["zh", "neutral", "", "", "", "", "他来了", "他跑了", "1", "1",
                           "facetoface", "neutral"]],
         "xnli.test.tsv": [XNLI_DEV_HEADER,
                           ["zh", "entailment", "", "", "", "", "下雨了", "有雨", "2", "2",
                            "facetoface", "entailment"],
                           ["de", "entailment", "", "", "", "", "Es regnet.", "Regen.", "2",
                            "2", "facetoface", "entailment"]]},
        {"train": [("train-1", "他说", "他没说", "contradiction"),
                   ("train-2", "天很好", "天气好", "entailment")],
         "dev": [("dev-2", "他来了", "他跑了", "neutral")],
         "test": [("test-1", "下雨了", "有雨", "entailment")]}),
}


@pytest.mark.parametrize("task_name", sorted(PROCESSOR_CASES))
def test_processor_reads_the_data_set_layout(rc, tmp_path, task_name):
  files, expected = PROCESSOR_CASES[task_name]
  write_files(str(tmp_path), files)
  processor = rc.PROCESSORS[task_name.lower()]()
  read = {
      "train": processor.get_train_examples(str(tmp_path)),
      "dev": processor.get_dev_examples(str(tmp_path)),
      "test": processor.get_test_examples(str(tmp_path)),
  }
  for set_name, examples in read.items():
    assert [(e.guid, e.text_a, e.text_b, e.label) for e in examples] == expected[set_name]


def test_task_names_cover_glue_and_xnli(rc):
  assert sorted(rc.PROCESSORS) == [
      "cola", "mnli", "mnli-mm", "mnli_mismatched", "mrpc", "qnli", "qqp", "rte", "sst-2",
      "sts-b", "wnli", "xnli"]
  assert rc.StsbProcessor().get_labels() is None
  assert rc.MnliProcessor().get_labels() == ["contradiction", "entailment", "neutral"]
  assert rc.QnliProcessor().get_labels() == ["entailment", "not_entailment"]


def test_line_with_too_few_columns_names_file_and_line(rc, tmp_path):
  write_files(str(tmp_path), {"dev.tsv": [
      ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
      ["1", "1", "2", "A.", "B."],
      ["0", "3", "4", "only one sentence"]]})
  with pytest.raises(script_io.InputError,
                     match=r"dev\.tsv line 3: expected at least 5 tab-separated columns, found 4"):
    rc.MrpcProcessor().get_dev_examples(str(tmp_path))


def test_unknown_label_names_file_and_line(rc, tmp_path):
  write_files(str(tmp_path), {"train.tsv": [
      ["index", "sentence1", "sentence2", "label"],
      ["0", "A.", "B.", "entailment"],
      ["1", "C.", "D.", "entails"]]})
  with pytest.raises(script_io.InputError,
                     match=r"train\.tsv line 3: unknown label 'entails'; "
                           r"the labels are entailment, not_entailment"):
    rc.RteProcessor().get_train_examples(str(tmp_path))


def test_regression_label_must_be_a_number(rc, tmp_path):
  files, _ = PROCESSOR_CASES["STS-B"]
  rows = [list(row) for row in files["dev.tsv"]]
  rows[1][9] = "high"
  write_files(str(tmp_path), {"dev.tsv": rows})
  with pytest.raises(script_io.InputError, match=r"dev\.tsv line 2: the label 'high' is not a"):
    rc.StsbProcessor().get_dev_examples(str(tmp_path))


# ------------------------------------------------------------------------------------------------
# Features.

@pytest.fixture(scope="module")
def tokenizer():
  return tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)


def test_sentence_pair_features(rc, tokenizer):
  example = rc.InputExample("dev-1", "The cat sat", "on the mat", label="1")
  feature = rc.convert_single_example(0, example, ["0", "1"], 10, tokenizer)
  tokens = ["[CLS]", "the", "cat", "sat", "[SEP]", "on", "the", "mat", "[SEP]"]
  assert feature.input_ids == tokenizer.convert_tokens_to_ids(tokens) + [0]
  assert feature.segment_ids == [0] * 5 + [1] * 4 + [0]
  assert feature.input_mask == [1] * 9 + [0]
  assert feature.label_id == 1
  assert feature.is_real_example


def test_pair_truncation_trims_the_longer_sentence_first(rc, tokenizer):
  example = rc.InputExample("dev-1", "the cat sat", "on the mat today", label="0")
  feature = rc.convert_single_example(0, example, ["0", "1"], 8, tokenizer)
  tokens = ["[CLS]", "the", "cat", "sat", "[SEP]", "on", "the", "[SEP]"]
  assert feature.input_ids == tokenizer.convert_tokens_to_ids(tokens)
  tokens_a, tokens_b = list("abcdef"), list("xy")
  rc._truncate_seq_pair(tokens_a, tokens_b, 5)
  assert (tokens_a, tokens_b) == (list("abc"), list("xy"))


def test_single_sentence_and_padding_features(rc, tokenizer):
  example = rc.InputExample("train-0", "the cat sat on the mat", label="0")
  feature = rc.convert_single_example(0, example, ["0", "1"], 5, tokenizer)
  assert feature.input_ids == tokenizer.convert_tokens_to_ids(
      ["[CLS]", "the", "cat", "sat", "[SEP]"])
  assert feature.segment_ids == [0] * 5
  padding = rc.convert_single_example(7, rc.PaddingInputExample(), ["0", "1"], 4, tokenizer)
  assert (padding.input_ids, padding.input_mask, padding.segment_ids) == ([0] * 4,) * 3
  assert (padding.label_id, padding.is_real_example) == (0, False)
  regression = rc.convert_single_example(
      0, rc.InputExample("dev-3", "a", "b", label="3.5"), None, 6, tokenizer)
  assert regression.label_id == 3.5


def test_in_memory_input_fn_serves_the_features(rc, tokenizer):
  examples = [rc.InputExample("a", "the cat", label="0"),
              rc.InputExample("b", "a dog", "on the mat", label="1"),
              rc.PaddingInputExample()]
  features = rc.convert_examples_to_features(examples, ["0", "1"], 8, tokenizer)
  input_fn = rc.input_fn_builder(features, 8, is_training=False, drop_remainder=False)
  with tf.Graph().as_default():
    batch = tf.data.make_one_shot_iterator(input_fn({"batch_size": 3})).get_next()
    with tf.Session() as session:
      values = session.run(batch)
  np.testing.assert_array_equal(values["input_ids"], [f.input_ids for f in features])
  np.testing.assert_array_equal(values["segment_ids"][1], features[1].segment_ids)
  np.testing.assert_array_equal(values["label_ids"], [0, 1, 0])
  np.testing.assert_array_equal(values["is_real_example"], [1, 1, 0])


def test_padding_is_added_on_tpu_only(rc):
  examples = [rc.InputExample(str(i), "text", label="0") for i in range(5)]
  assert rc._padded_for_tpu(examples, 4, use_tpu=False) == examples
  padded = rc._padded_for_tpu(examples, 4, use_tpu=True)
  assert padded[:5] == examples and len(padded) == 8
  assert all(isinstance(e, rc.PaddingInputExample) for e in padded[5:])


@pytest.mark.slow
def test_padding_examples_are_left_out_of_the_metrics(rc, tmp_path, tokenizer):
  processor = rc.MrpcProcessor()
  examples = processor.get_dev_examples(CLASSIFIER_DATA)
  eval_file = str(tmp_path / "eval.tf_record")
  rc.file_based_convert_examples_to_features(
      examples + [rc.PaddingInputExample()] * 4, processor.get_labels(), 64, tokenizer,
      eval_file)
  bert_config = rc.modeling.BertConfig.from_json_file(MODEL_CONFIG)
  model_fn = rc.model_fn_builder(bert_config, 2, FINETUNED_CHECKPOINT, 5e-5, None, None,
                                 use_tpu=False, use_one_hot_embeddings=False)
  estimator = rc.estimator_setup.make_estimator(
      model_fn, str(tmp_path / "model"), rc.estimator_setup.RunOptions(), eval_batch_size=8)
  result = estimator.evaluate(rc.file_based_input_fn_builder(eval_file, 64, False, True))
  assert abs(result["eval_accuracy"] - REFERENCE_EVAL_RESULTS["eval_accuracy"]) < 1e-6
  assert abs(result["eval_loss"] - REFERENCE_EVAL_RESULTS["eval_loss"]) < 1e-5



def test_correlations(rc):
  result = rc.correlations([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
  assert result["eval_pearson"] == pytest.approx(0.8)
  assert result["eval_spearman"] == pytest.approx(0.8)
  # Ties share their mean rank: [1, 2.5, 2.5, 4] against [1, 2, 3, 4].
  result = rc.correlations([0.1, 0.5, 0.5, 9.0], [1.0, 2.0, 3.0, 4.0])
  assert result["eval_spearman"] == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
  expected_pearson = np.corrcoef([0.1, 0.5, 0.5, 9.0], [1.0, 2.0, 3.0, 4.0])[0, 1]
  assert result["eval_pearson"] == pytest.approx(expected_pearson)


# ------------------------------------------------------------------------------------------------
# Whole runs.

@pytest.mark.slow
def test_eval_and_predict_match_the_original(tmp_path):
  output_dir = str(tmp_path / "out")
  run_classifier(PARITY_FLAGS + ["--output_dir=" + output_dir])

  results = read_eval_results(output_dir)
  assert sorted(results) == ["eval_accuracy", "eval_loss", "global_step", "loss"]
  for name, value in REFERENCE_EVAL_RESULTS.items():
    assert abs(results[name] - value) <= 1e-4, name
  probabilities = read_test_results(output_dir)
  reference_probabilities = np.loadtxt(
      support.fixture_path("classifier", "reference_test_results.tsv"))
  assert probabilities.shape == reference_probabilities.shape == (40, 2)
  np.testing.assert_allclose(probabilities, reference_probabilities, atol=1e-4)
  assert not support.temporary_outputs(output_dir)


@pytest.mark.slow
def test_fine_tuning_a_tiny_model_writes_every_output(tmp_path):
  output_dir = str(tmp_path / "out")
  result = run_classifier([
      "--task_name=mrpc", "--data_dir=" + CLASSIFIER_DATA, "--output_dir=" + output_dir,
      "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
      "--do_train=true", "--do_eval=true", "--do_predict=true", "--max_seq_length=64",
      "--train_batch_size=32", "--num_train_epochs=1", "--learning_rate=1e-3"])

  # 300 training examples in batches of 32 make 9 steps.
  assert tf.train.latest_checkpoint(output_dir).endswith("model.ckpt-9")
  for name in ("train.tf_record", "eval.tf_record", "predict.tf_record"):
    assert os.path.getsize(os.path.join(output_dir, name)) > 0
  results = read_eval_results(output_dir)
  assert sorted(results) == ["eval_accuracy", "eval_loss", "global_step", "loss"]
  assert results["global_step"] == 9
  assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["eval_loss"] > 0.0
  probabilities = read_test_results(output_dir)
  assert probabilities.shape == (40, 2)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  # The first five examples of each set are logged.
  assert result.stderr.count("INFO:tensorflow:*** Example ***") == 15
  assert "guid: train-1" in result.stderr and "guid: test-5" in result.stderr
  assert "Num examples = 60 (60 actual, 0 padding)" in result.stderr


@pytest.mark.slow
def test_micro_batches_under_the_mirrored_strategy_on_the_cpu(tmp_path):
  output_dir = str(tmp_path / "out")
  result = run_classifier([
      "--task_name=mrpc", "--data_dir=" + CLASSIFIER_DATA, "--output_dir=" + output_dir,
      "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
      "--do_train=true", "--do_eval=true", "--do_predict=true", "--max_seq_length=32",
      "--train_batch_size=32", "--num_train_epochs=1", "--learning_rate=1e-3",
      "--gradient_accumulation_steps=2", "--distribution_strategy=mirrored"])

  # Without a GPU, mirrored trains on the CPU alone: one replica.
  assert ("Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/device:CPU:0',)"
          in result.stderr)
  assert "name = input_ids, shape = (16, None)" in result.stderr
  # 300 examples in batches of 32 make 9 updates, each of two micro-batches of 16.
  assert tf.train.latest_checkpoint(output_dir).endswith("model.ckpt-9")
  assert read_eval_results(output_dir)["global_step"] == 9
  assert read_test_results(output_dir).shape == (40, 2)


def _stsb_rows(rng, count, with_score):
  """STS-B rows whose score is the number of words the two sentences share (0 to 5)."""
  words = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "eats", "fast"]
  header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
            "sentence1", "sentence2"]
  rows = [header + ["score"] if with_score else header]
  for index in range(count):
    sentence1 = rng.sample(words, 5)
    shared = rng.randint(0, 5)
    sentence2 = sentence1[:shared] + [w for w in words if w not in sentence1][:5 - shared]
    row = [str(index), "main-captions", "MSRvid", "2012test", "%04d" % index, "none", "none",
           " ".join(sentence1), " ".join(sentence2)]
    rows.append(row + ["%.3f" % shared] if with_score else row)
  return rows


@pytest.mark.slow
def test_regression_on_sts_b_reports_correlations(tmp_path):
  rng = random.Random(3)
  data_dir = str(tmp_path / "STS-B")
  dev_rows = _stsb_rows(rng, 20, True)
  write_files(data_dir, {"train.tsv": _stsb_rows(rng, 64, True),
                         "dev.tsv": dev_rows,
                         "test.tsv": _stsb_rows(rng, 7, False)})
  output_dir = str(tmp_path / "out")
  run_classifier([
      "--task_name=STS-B", "--data_dir=" + data_dir, "--output_dir=" + output_dir,
      "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
      "--do_train=true", "--do_eval=true", "--do_predict=true", "--max_seq_length=16",
      "--train_batch_size=16", "--num_train_epochs=2", "--learning_rate=1e-3",
      "--eval_batch_size=8", "--predict_batch_size=3"])

  results = read_eval_results(output_dir)
  assert sorted(results) == ["eval_loss", "eval_pearson", "eval_spearman", "global_step", "loss"]
  assert results["global_step"] == 8
  assert -1.0 <= results["eval_pearson"] <= 1.0 and -1.0 <= results["eval_spearman"] <= 1.0
  scores = read_test_results(output_dir)
  assert scores.shape == (7, 1) and np.all(np.isfinite(scores))
  record = next(tf.io.tf_record_iterator(os.path.join(output_dir, "eval.tf_record")))
  label = tf.train.Example.FromString(record).features.feature["label_ids"]
  # Scores are stored as floats, not as class ids.
  assert list(label.float_list.value) == [float(dev_rows[1][9])]


# ------------------------------------------------------------------------------------------------
# The real pretrained model, converted from its Hugging Face folder, learns a paraphrase task.

SUBJECTS = ["the cat", "the old dog", "my neighbour", "the teacher", "a farmer", "the pilot",
            "her brother", "the doctor", "a young girl", "the baker", "our coach", "the artist"]
VERBS = [("paints", "painted"), ("repairs", "repaired"), ("sells", "sold"), ("washes", "washed"),
         ("buys", "bought"), ("finds", "found"), ("carries", "carried"), ("hides", "hid"),
         ("cleans", "cleaned"), ("moves", "moved")]
OBJECTS = ["the red car", "a small boat", "the kitchen door", "the wooden fence",
           "a blue bicycle", "the heavy box", "an old piano", "the garden chair", "a new lamp",
           "the broken window"]
PLACES = ["in the morning", "near the river", "after lunch", "on sunday", "before dinner",
          "at night", "in the city", "during the storm"]


def _paraphrase_pair(rng, label):
  """An active sentence and a passive one: its paraphrase (label "1") or about others ("0")."""
  subject, verb, thing, place = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                 rng.choice(PLACES))
  active = "%s %s %s %s." % (subject, verb[0], thing, place)
  if label == "0":
    subject = rng.choice([x for x in SUBJECTS if x != subject])
    verb = rng.choice([x for x in VERBS if x != verb])
    thing = rng.choice([x for x in OBJECTS if x != thing])
  return active, "%s, %s was %s by %s." % (place, thing, verb[1], subject)


def _write_paraphrase_task(data_dir, seed, num_train, num_dev, num_test):
  """Writes the task in MRPC's layout; returns the test labels, which test.tsv leaves out."""
  rng = random.Random(seed)
  files = {}
  test_labels = []
  for name, count in (("train.tsv", num_train), ("dev.tsv", num_dev), ("test.tsv", num_test)):
    first_column = "index" if name == "test.tsv" else "Quality"
    rows = [[first_column, "#1 ID", "#2 ID", "#1 String", "#2 String"]]
    for index in range(count):
      label = rng.choice("01")
      active, passive = _paraphrase_pair(rng, label)
      if name == "test.tsv":
        test_labels.append(int(label))
      rows.append([str(index) if name == "test.tsv" else label, str(2 * index),
                   str(2 * index + 1), active, passive])
    files[name] = rows
  write_files(data_dir, files)
  return test_labels


@pytest.fixture(scope="module")
def pretrained_model(tmp_path_factory):
  """The real pretrained MiniLM BERT converted to the original layout, once per module."""
  import convert_hf_checkpoint  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path_factory.mktemp("minilm") / "original")
  convert_hf_checkpoint.hf_to_original(support.real_model_dir(), model_dir)
  return model_dir


@pytest.mark.slow
def test_real_pretrained_model_learns_a_paraphrase_task(pretrained_model, tmp_path):
  data_dir = str(tmp_path / "data")
  test_labels = _write_paraphrase_task(data_dir, seed=2, num_train=640, num_dev=100,
                                       num_test=20)
  output_dir = str(tmp_path / "out")
  run_classifier([
      "--task_name=MRPC", "--data_dir=" + data_dir, "--output_dir=" + output_dir,
      "--bert_config_file=" + os.path.join(pretrained_model, "bert_config.json"),
      "--vocab_file=" + os.path.join(pretrained_model, "vocab.txt"),
      "--init_checkpoint=" + os.path.join(pretrained_model, "bert_model.ckpt"),
      "--do_train=true", "--do_eval=true", "--do_predict=true", "--max_seq_length=32",
      "--train_batch_size=16", "--num_train_epochs=1", "--learning_rate=1e-4",
      "--eval_batch_size=50", "--predict_batch_size=20"])

  # 40 steps; the same run from a random initialisation stays at chance (0.47 when measured).
  results = read_eval_results(output_dir)
  assert results["global_step"] == 40
  assert results["eval_accuracy"] >= 0.75
  predicted = read_test_results(output_dir).argmax(axis=1)
  assert np.mean(predicted == np.array(test_labels)) >= 0.75


# ------------------------------------------------------------------------------------------------
# Bad input: one line each.

@pytest.mark.slow
def test_bad_input_ends_with_one_line(tmp_path):
  result = support.run_script("run_classifier", [
      "--task_name=glue", "--data_dir=" + CLASSIFIER_DATA, "--output_dir=" + str(tmp_path),
      "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
      "--do_eval=true"])
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "ERROR: --task_name=glue is not a known task; the tasks are cola, mnli, mnli-mm, "
      "mnli_mismatched, mrpc, qnli, qqp, rte, sst-2, sts-b, wnli, xnli")


def _flags_with(tmp_path, **overrides):
  values = {
      "task_name": "MRPC", "data_dir": CLASSIFIER_DATA, "output_dir": str(tmp_path / "out"),
      "bert_config_file": MODEL_CONFIG, "vocab_file": support.VOCAB_FILE, "do_eval": "true"}
  values.update(overrides)
  return ["--%s=%s" % item for item in values.items()]


@pytest.mark.parametrize("overrides, message", [
    ({"task_name": "sst"}, r"--task_name=sst is not a known task; the tasks are cola, mnli,"),
    ({"do_eval": "false"}, r"at least one of --do_train, --do_eval or --do_predict must be true"),
    ({"max_seq_length": "1024"}, r"--max_seq_length=1024 is longer than the model allows: .*"
                                 r"max_position_embeddings=512"),
    ({"init_checkpoint": "/models/cased_L-12_H-768_A-12/bert_model.ckpt"},
     r"--do_lower_case=True.*cased_L-12_H-768_A-12"),
    ({"vocab_file": "/nowhere/vocab.txt"}, r"--vocab_file: no such file: /nowhere/vocab.txt"),
    ({"do_train": "true", "train_batch_size": "512", "num_train_epochs": "1"},
     r"--do_train: 300 training examples make no full batch of --train_batch_size=512"),
    ({"vocab_file": MODEL_CONFIG},
     r"--vocab_file: Vocabulary file .*bert_config.json has no \[UNK\] line"),
    ({"init_checkpoint": "/models/bert_modle.ckpt"},
     r"^--init_checkpoint: no checkpoint at /models/bert_modle.ckpt$"),
    ({"do_train": "true", "train_batch_size": "0"}, r"^--train_batch_size=0 must be positive$"),
    ({"eval_batch_size": "0"}, r"^--eval_batch_size=0 must be positive$"),
    ({"max_seq_length": "2"}, r"^--max_seq_length=2 leaves no room for the text"),
    ({"do_train": "true", "gradient_accumulation_steps": "3"},
     r"--train_batch_size=32 cannot be split into --gradient_accumulation_steps=3 micro-batches"),
    ({"do_train": "true", "do_predict": "true", "distribution_strategy": "multi_worker_mirrored"},
     r"--distribution_strategy=multi_worker_mirrored only trains: leave out --do_eval and "
     r"--do_predict, and evaluate"),
])
def test_bad_flags(rc, tmp_path, overrides, message):
  with pytest.raises(script_io.InputError, match=message):
    support.run_main_in_process(rc, _flags_with(tmp_path, **overrides))


@pytest.mark.slow
def test_mistyped_init_checkpoint_is_one_line(tmp_path):
  checkpoint = str(tmp_path / "uncased_L-12_H-768_A-12" / "bert_model.ckpt")
  # The last value of a flag counts.
  result = support.run_script("run_classifier", PARITY_FLAGS + [
      "--init_checkpoint=" + checkpoint, "--output_dir=" + str(tmp_path / "out")])
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "ERROR: --init_checkpoint: no checkpoint at %s" % checkpoint)


def test_missing_tsv_is_named(rc, tmp_path):
  write_files(str(tmp_path / "data"), {"train.tsv": [["Quality"]]})
  with pytest.raises(script_io.InputError,
                     match=r"--data_dir: no such file: .*data/test\.tsv"):
    support.run_main_in_process(rc, _flags_with(tmp_path, data_dir=str(tmp_path / "data"),
                                                do_eval="false", do_predict="true"))


def test_bad_test_file_stops_the_run_before_training(rc, tmp_path):
  data_dir = str(tmp_path / "data")
  for name in ("train.tsv", "dev.tsv", "test.tsv"):
    with open(os.path.join(CLASSIFIER_DATA, name)) as reader:
      write_files(data_dir, {name: [line.rstrip("\n").split("\t") for line in reader]})
  with open(os.path.join(data_dir, "test.tsv"), "a") as writer:
    writer.write("40\tno second sentence\n")
  with pytest.raises(script_io.InputError, match=r"test\.tsv line 42: expected at least 5"):
    support.run_main_in_process(rc, _flags_with(tmp_path, data_dir=data_dir, do_train="true",
                                                do_predict="true"))
  assert not os.path.exists(str(tmp_path / "out" / "train.tf_record"))


# ------------------------------------------------------------------------------------------------
# Speed: --precision, --use_xla, --batch_by_length (batches are cut to their longest sequence).

@pytest.mark.slow
def test_length_sorted_batches_with_xla_match_the_original(tmp_path):
  output_dir = str(tmp_path / "out")
  run_classifier(PARITY_FLAGS + ["--output_dir=" + output_dir, "--batch_by_length=true",
                                 "--use_xla=true"])

  results = read_eval_results(output_dir)
  # "loss" is the mean of the batches' mean losses, which depends on how batches are made.
  for name in ("eval_accuracy", "eval_loss"):
    assert abs(results[name] - REFERENCE_EVAL_RESULTS[name]) <= 1e-4, name
  # Written back in input order.
  np.testing.assert_allclose(
      read_test_results(output_dir),
      np.loadtxt(support.fixture_path("classifier", "reference_test_results.tsv")), atol=1e-4)


def tiny_training_flags(output_dir):
  """Flags that fine-tune the fixture model on MRPC for 3 steps of 16 examples."""
  return ["--task_name=mrpc", "--data_dir=" + CLASSIFIER_DATA, "--output_dir=" + output_dir,
          "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
          "--do_train=true", "--max_seq_length=32", "--train_batch_size=16",
          "--num_train_epochs=0.2", "--learning_rate=1e-3"]


def checkpoint_dtypes(output_dir):
  """Returns {variable name: dtype} of the latest checkpoint in `output_dir`."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(output_dir))
  return reader.get_variable_to_dtype_map()


@pytest.mark.slow
def test_bfloat16_training_writes_the_float32_checkpoint_layout(tmp_path):
  fp32_dir, bf16_dir = str(tmp_path / "fp32"), str(tmp_path / "bf16")
  run_classifier(tiny_training_flags(fp32_dir))
  run_classifier(tiny_training_flags(bf16_dir) + ["--precision=bf16", "--use_xla=true",
                                                  "--batch_by_length=true"])

  assert tf.train.latest_checkpoint(bf16_dir).endswith("model.ckpt-3")
  dtypes = checkpoint_dtypes(bf16_dir)
  assert dtypes == checkpoint_dtypes(fp32_dir)
  assert {dtype for name, dtype in dtypes.items() if name != "global_step"} == {tf.float32}
  # Evaluated in float32 from the bfloat16-trained checkpoint.
  eval_dir = str(tmp_path / "eval")
  run_classifier(PARITY_FLAGS[:3] + [
      "--do_eval=true", "--output_dir=" + eval_dir, "--bert_config_file=" + MODEL_CONFIG,
      "--vocab_file=" + support.VOCAB_FILE, "--max_seq_length=32",
      "--init_checkpoint=" + tf.train.latest_checkpoint(bf16_dir)])
  assert 0.0 <= read_eval_results(eval_dir)["eval_accuracy"] <= 1.0


@pytest.mark.slow
def test_float16_training_with_loss_scaling(rc, tmp_path, monkeypatch):
  # No CPU has fast float16: claim support so that the float16 path runs.
  monkeypatch.setattr(rc.precision, "compute_type_support", lambda dtype: (True, "test"))
  output_dir = str(tmp_path / "out")
  support.run_main_in_process(rc, tiny_training_flags(output_dir) + ["--precision=fp16"])

  assert tf.train.latest_checkpoint(output_dir).endswith("model.ckpt-3")
  dtypes = checkpoint_dtypes(output_dir)
  assert {dtype for name, dtype in dtypes.items() if name != "global_step"} == {tf.float32}
  assert not [name for name in dtypes if "loss_scale" in name]


@pytest.mark.slow
def test_unsupported_precision_falls_back_to_float32_with_a_warning(rc, tmp_path, monkeypatch):
  monkeypatch.setattr(rc.precision, "compute_type_support",
                      lambda dtype: (False, "CPU without AMX-BF16 or AVX512_BF16"))
  warnings = []
  monkeypatch.setattr(tf.logging, "warning", lambda message, *args: warnings.append(
      message % args))
  built_with = []
  real_bert_model = rc.modeling.BertModel
  monkeypatch.setattr(rc.modeling, "BertModel", lambda *args, **kwargs: built_with.append(
      kwargs["compute_type"]) or real_bert_model(*args, **kwargs))
  support.run_main_in_process(
      rc, tiny_training_flags(str(tmp_path / "out")) + ["--precision=bf16"])

  assert built_with and set(built_with) == {tf.float32}
  assert [w for w in warnings if "--precision=bf16" in w] == [
      "--precision=bf16 needs hardware this machine lacks (CPU without AMX-BF16 or "
      "AVX512_BF16): running in float32"]
