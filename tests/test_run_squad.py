"""Tests of run_squad.py: parity with the original's predictions and training features, the
official scores written beside the predictions, end-to-end training runs (in micro-batches too),
and bad input."""

import json
import os
import subprocess
import sys
import textwrap

from absl import flags
from absl.testing import flagsaver
import pytest
import script_io
import squad_metrics
import support
import tensorflow.compat.v1 as tf

SQUAD_DIR = support.fixture_path("squad")
MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
VERSIONS = ("v1.1", "v2.0")

# The fixtures' window: 96 positions, at most 24 question tokens, windows 32 tokens apart.
WINDOW_FLAGS = {"max_seq_length": 96, "max_query_length": 24, "doc_stride": 32}


@pytest.fixture(scope="module")
def run_squad():
  module = support.load_script("run_squad")
  flags.FLAGS.mark_as_parsed()
  return module


@pytest.fixture(scope="module")
def tokenizer(run_squad):
  return run_squad.tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)


def squad_file(name):
  return os.path.join(SQUAD_DIR, name)


def read_json(path):
  with open(path) as reader:
    return json.load(reader)


def read_text(path):
  with open(path) as reader:
    return reader.read()


def write_json(path, value):
  with open(path, "w") as writer:
    json.dump(value, writer)
  return str(path)


def squad_json(*qas, context="Paris is the capital of France."):
  """A one-paragraph SQuAD JSON object with the given questions."""
  return {"version": "test", "data": [{"title": "t", "paragraphs": [
      {"context": context, "qas": list(qas)}]}]}


def question(qid, text, answers, **fields):
  qa = {"id": qid, "question": text, "answers": answers}
  qa.update(fields)
  return qa


def answer(text, answer_start):
  return {"text": text, "answer_start": answer_start}


def assert_no_temporary_files(output_dir):
  assert not support.temporary_outputs(output_dir)


# Parity with the reference predictions of the original code.


def fixture_flags(version):
  return read_text(squad_file("flags-%s.txt" % version)).split()


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_predictions_equal_the_originals(version, tmp_path):
  args = fixture_flags(version) + [
      "--do_predict=True", "--predict_file=dev-%s.json" % version,
      "--init_checkpoint=finetuned-%s.ckpt" % version, "--predict_batch_size=8",
      "--output_dir=%s" % tmp_path]
  result = support.run_script("run_squad", args, cwd=SQUAD_DIR)
  assert result.returncode == 0, result.stderr[-3000:]
  reference_dir = squad_file("reference-" + version)

  # Texts only: equal to the byte, JSON formatting included.
  assert (read_text(tmp_path / "predictions.json") ==
          read_text(os.path.join(reference_dir, "predictions.json")))

  nbest = read_json(tmp_path / "nbest_predictions.json")
  reference_nbest = read_json(os.path.join(reference_dir, "nbest_predictions.json"))
  assert list(nbest) == list(reference_nbest)
  for qid, reference_entries in reference_nbest.items():
    assert [entry["text"] for entry in nbest[qid]] == [
        entry["text"] for entry in reference_entries], qid
    for entry, reference_entry in zip(nbest[qid], reference_entries):
      for key in ("probability", "start_logit", "end_logit"):
        assert entry[key] == pytest.approx(reference_entry[key], abs=1e-4), (qid, key)

  null_odds_path = tmp_path / "null_odds.json"
  if version == "v2.0":
    null_odds = read_json(null_odds_path)
    reference_null_odds = read_json(os.path.join(reference_dir, "null_odds.json"))
    assert list(null_odds) == list(reference_null_odds)
    for qid, odds in reference_null_odds.items():
      assert null_odds[qid] == pytest.approx(odds, abs=1e-4), qid
  else:
    assert not null_odds_path.exists()

  # The dev files carry their answers: the official scores of these predictions are written.
  data = read_json(squad_file("dev-%s.json" % version))["data"]
  reference_predictions = read_json(os.path.join(reference_dir, "predictions.json"))
  if version == "v2.0":
    expected = squad_metrics.evaluate_v2(data, reference_predictions, reference_null_odds)
  else:
    expected = squad_metrics.evaluate_v1(data, reference_predictions)
  scores = read_json(tmp_path / "eval_results.json")
  assert list(scores) == list(expected)
  for key, value in expected.items():
    assert scores[key] == pytest.approx(value, abs=1e-6), key
  assert "f1 = " in result.stderr
  assert_no_temporary_files(tmp_path)


# Training features against the original code, run in a subprocess (its flags and ours clash).

ORACLE = textwrap.dedent("""
    import json, sys, types
    import tensorflow
    import tensorflow.compat.v1 as tf
    for name in ("gfile", "flags", "logging", "python_io"):
      setattr(tensorflow, name, getattr(tf, name))
    # Only modeling needs tf.contrib, and only to build a model, which this does not.
    contrib = types.ModuleType("tensorflow.contrib")
    for name in ("layers", "tpu", "cluster_resolver", "data"):
      setattr(contrib, name, types.ModuleType(name))
      sys.modules["tensorflow.contrib." + name] = getattr(contrib, name)
    sys.modules["tensorflow.contrib"] = contrib
    from bert import run_squad, tokenization

    vocab_file, max_seq_length, doc_stride, max_query_length = sys.argv[1:5]
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    output = {}
    for version, train_file in zip(sys.argv[5::2], sys.argv[6::2]):
      run_squad.FLAGS(["oracle", "--version_2_with_negative=%s" % (version == "v2.0")])
      examples = run_squad.read_squad_examples(train_file, is_training=True)
      features = []
      run_squad.convert_examples_to_features(
          examples, tokenizer, int(max_seq_length), int(doc_stride), int(max_query_length),
          True, lambda feature: features.append(feature.__dict__))
      output[version] = {"examples": [example.__dict__ for example in examples],
                         "features": features}
    print(json.dumps(output))
    """)


def comparable(fields):
  """Feature fields with the int-keyed maps as sorted [position, value] lists, as JSON can hold.

  The original stores is_impossible as given (True/False, or 0/1 from JSON); compare it as bool.
  """
  comparable_fields = {}
  for key, value in fields.items():
    if isinstance(value, dict):
      value = sorted([int(position), item] for position, item in value.items())
    comparable_fields[key] = value
  comparable_fields["is_impossible"] = bool(comparable_fields["is_impossible"])
  return comparable_fields


@pytest.fixture(scope="module")
def original_training_features():
  args = [support.VOCAB_FILE] + [str(WINDOW_FLAGS[name]) for name in (
      "max_seq_length", "doc_stride", "max_query_length")]
  for version in VERSIONS:
    args += [version, squad_file("train-%s.json" % version)]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run([sys.executable, "-c", ORACLE] + args, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_training_features_equal_the_originals(version, run_squad, tokenizer,
                                               original_training_features):
  with flagsaver.flagsaver(version_2_with_negative=(version == "v2.0")):
    examples = run_squad.read_squad_examples(
        squad_file("train-%s.json" % version), is_training=True)
  features = []
  run_squad.convert_examples_to_features(
      examples, tokenizer, WINDOW_FLAGS["max_seq_length"], WINDOW_FLAGS["doc_stride"],
      WINDOW_FLAGS["max_query_length"], True, features.append)

  expected = original_training_features[version]
  assert [vars(example) for example in examples] == expected["examples"]
  assert len(features) == len(expected["features"])
  for feature, expected_feature in zip(features, expected["features"]):
    assert comparable(vars(feature)) == comparable(expected_feature)
  assert features[0].unique_id == 1000000000
  if version == "v2.0":
    assert any(feature.is_impossible for feature in features)
  # Several windows per example, some without the answer: the window logic is exercised.
  assert max(feature.doc_span_index for feature in features) >= 2
  assert any(feature.start_position == 0 and not feature.is_impossible for feature in features)


# Training and predicting with a tiny random model, as a user would.


def read_records(path):
  records = []
  for serialized in tf.io.tf_record_iterator(str(path)):
    example = tf.train.Example.FromString(serialized)
    records.append({name: list(feature.int64_list.value)
                    for name, feature in example.features.feature.items()})
  return records


@pytest.mark.slow
def test_train_then_predict_end_to_end(tmp_path):
  args = [
      "--vocab_file=" + support.VOCAB_FILE,
      "--bert_config_file=" + MODEL_CONFIG,
      "--do_train=True",
      "--train_file=" + squad_file("train-v1.1.json"),
      "--do_predict=True",
      "--predict_file=" + squad_file("dev-v1.1.json"),
      "--train_batch_size=16",
      "--num_train_epochs=0.3",
      "--learning_rate=1e-4",
      "--n_best_size=5",
      "--output_dir=%s" % tmp_path,
  ] + ["--%s=%d" % item for item in WINDOW_FLAGS.items()]
  result = support.run_script("run_squad", args)
  assert result.returncode == 0, result.stderr[-3000:]

  # 174 questions / 16 * 0.3 epochs = 3 steps.
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-3")

  records = read_records(tmp_path / "train.tf_record")
  assert len(records) > 174
  assert sorted(records[0]) == ["end_positions", "input_ids", "input_mask", "is_impossible",
                                "segment_ids", "start_positions", "unique_ids"]
  assert [record["unique_ids"][0] for record in records] == list(
      range(1000000000, 1000000000 + len(records)))
  for record in records:
    assert len(record["input_ids"]) == WINDOW_FLAGS["max_seq_length"]
    start, end = record["start_positions"][0], record["end_positions"][0]
    assert 0 <= start <= end < sum(record["input_mask"])
    assert record["is_impossible"] == [0]

  dev_ids = [qa["id"] for article in read_json(squad_file("dev-v1.1.json"))["data"]
             for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
  predictions = read_json(tmp_path / "predictions.json")
  nbest = read_json(tmp_path / "nbest_predictions.json")
  assert list(predictions) == dev_ids
  assert list(nbest) == dev_ids
  for qid in dev_ids:
    assert 1 <= len(nbest[qid]) <= 5
    assert predictions[qid] == nbest[qid][0]["text"]
    assert sum(entry["probability"] for entry in nbest[qid]) == pytest.approx(1.0)
    scores = [entry["start_logit"] + entry["end_logit"] for entry in nbest[qid]]
    assert scores == sorted(scores, reverse=True)
  eval_results = read_json(tmp_path / "eval_results.json")
  assert list(eval_results) == ["exact_match", "f1"]
  assert 0.0 <= eval_results["exact_match"] <= eval_results["f1"] <= 100.0
  assert not (tmp_path / "null_odds.json").exists()
  assert_no_temporary_files(tmp_path)


@pytest.mark.slow
def test_training_in_micro_batches_counts_updates(tmp_path):
  result = support.run_script("run_squad", [
      "--vocab_file=" + support.VOCAB_FILE,
      "--bert_config_file=" + MODEL_CONFIG,
      "--do_train=True",
      "--train_file=" + squad_file("train-v1.1.json"),
      "--train_batch_size=16",
      "--gradient_accumulation_steps=4",
      "--num_train_epochs=0.3",
      "--output_dir=%s" % tmp_path,
  ] + ["--%s=%d" % item for item in WINDOW_FLAGS.items()])
  assert result.returncode == 0, result.stderr[-3000:]
  # Batches of 16 as micro-batches of 4; 174 questions / 16 * 0.3 epochs = 3 updates.
  assert "name = input_ids, shape = (4, 96)" in result.stderr
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-3")
  assert tf.train.load_variable(str(tmp_path), "global_step") == 3


# Prediction choices, on hand-made logits.


def one_window(run_squad, start_logits, end_logits):
  """An example "Paris is big" asked "what?", its one window, and that window's logits."""
  example = run_squad.SquadExample(
      qas_id="q1", question_text="what?", doc_tokens=["Paris", "is", "big"])
  tokens = ["[CLS]", "what", "?", "[SEP]", "paris", "is", "big", "[SEP]"]
  feature = run_squad.InputFeatures(
      unique_id=1000000000, example_index=0, doc_span_index=0, tokens=tokens,
      token_to_orig_map={4: 0, 5: 1, 6: 2}, token_is_max_context={4: True, 5: True, 6: True},
      input_ids=[0] * 8, input_mask=[1] * 8, segment_ids=[0] * 4 + [1] * 4)
  result = run_squad.RawResult(unique_id=1000000000, start_logits=start_logits,
                               end_logits=end_logits)
  return [example], [feature], [result]


# [CLS] and the question score highest; the context's best span is "Paris is big" (-1 + 0.5).
START_LOGITS = [5.0, 4.0, 3.0, 0.0, -1.0, -1.0, -1.0, 0.0]
END_LOGITS = [5.0, 4.0, 3.0, 0.0, -2.0, -1.0, 0.5, 0.0]


def predict(run_squad, tmp_path, n_best_size, **flag_values):
  with flagsaver.flagsaver(**flag_values):
    predictions, null_odds = run_squad.write_predictions(
        *one_window(run_squad, START_LOGITS, END_LOGITS), n_best_size=n_best_size,
        max_answer_length=30, do_lower_case=True,
        output_prediction_file=str(tmp_path / "predictions.json"),
        output_nbest_file=str(tmp_path / "nbest_predictions.json"),
        output_null_log_odds_file=str(tmp_path / "null_odds.json"))
  assert read_json(tmp_path / "predictions.json") == predictions
  return predictions, null_odds, read_json(tmp_path / "nbest_predictions.json")["q1"]


def test_v2_null_answer_against_threshold(run_squad, tmp_path):
  predictions, null_odds, nbest = predict(
      run_squad, tmp_path, 20, version_2_with_negative=True, null_score_diff_threshold=0.0)
  assert [entry["text"] for entry in nbest] == [
      "", "Paris is big", "is big", "big", "Paris is", "is", "Paris"]
  # Null 5 + 5 against -1 + 0.5.
  assert null_odds == {"q1": 10.5}
  assert predictions == {"q1": ""}
  assert read_json(tmp_path / "null_odds.json") == {"q1": 10.5}
  assert read_text(tmp_path / "null_odds.json") == json.dumps({"q1": 10.5}, indent=4) + "\n"

  # Null only when the difference exceeds the threshold.
  predictions, _, _ = predict(
      run_squad, tmp_path, 20, version_2_with_negative=True, null_score_diff_threshold=10.4)
  assert predictions == {"q1": ""}
  predictions, _, _ = predict(
      run_squad, tmp_path, 20, version_2_with_negative=True, null_score_diff_threshold=10.5)
  assert predictions == {"q1": "Paris is big"}


def test_v2_with_only_the_null_answer_predicts_it(run_squad, tmp_path):
  # The 2 best starts and ends are [CLS] and the question: no valid span. The original crashed.
  predictions, null_odds, nbest = predict(
      run_squad, tmp_path, 2, version_2_with_negative=True, null_score_diff_threshold=0.0)
  assert predictions == {"q1": ""}
  assert null_odds == {"q1": sys.float_info.max}
  assert nbest == [{"text": "", "probability": 1.0, "start_logit": 5.0, "end_logit": 5.0}]
  assert read_json(tmp_path / "null_odds.json") == {"q1": sys.float_info.max}


def test_v1_keeps_the_best_span_and_the_originals_placeholder(run_squad, tmp_path):
  predictions, null_odds, nbest = predict(
      run_squad, tmp_path, 20, version_2_with_negative=False)
  assert predictions == {"q1": "Paris is big"}
  assert null_odds == {}
  assert not (tmp_path / "null_odds.json").exists()
  assert nbest[0] == {"text": "Paris is big",
                      "probability": pytest.approx(nbest[0]["probability"]),
                      "start_logit": -1.0, "end_logit": 0.5}
  predictions, _, nbest = predict(run_squad, tmp_path, 2, version_2_with_negative=False)
  assert predictions == {"q1": "empty"}
  assert nbest == [{"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]


# The pieces of the processing.


def test_split_context_maps_characters_to_words(run_squad):
  doc_tokens, char_to_word_offset = run_squad.split_context(" ab  c\u202fd\u00a0e")
  assert doc_tokens == ["ab", "c", "d\u00a0e"]
  assert char_to_word_offset == [-1, 0, 0, 0, 0, 1, 1, 2, 2, 2]


def test_answer_span_is_tightened_to_the_annotated_text(run_squad, tokenizer):
  doc_tokens, _ = run_squad.split_context("The leader was John Smith (1895-1943).")
  example = run_squad.SquadExample(
      qas_id="q", question_text="When was John Smith born?", doc_tokens=doc_tokens,
      orig_answer_text="1895", start_position=5, end_position=5)
  features = []
  run_squad.convert_examples_to_features(
      [example], tokenizer, 64, 16, 16, True, features.append)
  assert len(features) == 1
  feature = features[0]
  assert feature.tokens[feature.start_position:feature.end_position + 1] == ["1895"]


def test_get_final_text_keeps_the_original_casing_and_drops_extra_characters(run_squad):
  with flagsaver.flagsaver(verbose_logging=False):
    assert run_squad.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
    assert run_squad.get_final_text("cafe", "Café!", True) == "Café"
    assert run_squad.get_final_text("nowhere", "Steve Smith's", True) == "Steve Smith's"


def test_softmax_and_best_indexes(run_squad):
  assert run_squad._compute_softmax([]) == []
  assert run_squad._compute_softmax([1000.0, 1000.0]) == [0.5, 0.5]
  assert run_squad._get_best_indexes([0.1, 0.3, 0.3, -1.0], 3) == [1, 2, 0]


# Training questions whose answer is not in their context are skipped, and counted.


def test_unfindable_training_answers_are_skipped_and_counted(run_squad, tmp_path, monkeypatch):
  train_file = write_json(tmp_path / "train.json", squad_json(
      question("good", "What is the capital?", [answer("Paris", 0)]),
      question("wrong_offset", "Which country?", [answer("France", 3)]),
      question("past_the_end", "Which country?", [answer("France", 400)]),
      question("empty", "Which country?", [answer("", 24)])))
  warnings = []
  monkeypatch.setattr(run_squad.tf.logging, "warning",
                      lambda message, *args: warnings.append(message % args))
  with flagsaver.flagsaver(version_2_with_negative=False):
    examples = run_squad.read_squad_examples(train_file, is_training=True)
  assert [example.qas_id for example in examples] == ["good"]
  assert (examples[0].start_position, examples[0].end_position) == (0, 0)
  assert len(warnings) == 4
  assert "wrong_offset" in warnings[0]
  assert "Skipped 3 of 4 training questions of %s" % train_file in warnings[-1]


def test_predict_examples_keep_every_question(run_squad, tmp_path):
  predict_file = write_json(tmp_path / "dev.json", squad_json(
      question("a", "Which country?", [answer("France", 3)]),
      question("b", "Which city?", [])))
  examples = run_squad.read_squad_examples(predict_file, is_training=False)
  assert [example.qas_id for example in examples] == ["a", "b"]


def test_scores_are_written_only_when_every_question_has_answers(run_squad, tmp_path):
  output = tmp_path / "eval_results.json"
  unanswered = write_json(tmp_path / "test.json", squad_json(
      question("a", "Which city?", [answer("Paris", 0)]), question("b", "What?", [])))
  with flagsaver.flagsaver(version_2_with_negative=False):
    run_squad.write_official_scores(unanswered, {"a": "Paris", "b": "x"}, {}, str(output))
  assert not output.exists()

  answered = write_json(tmp_path / "dev.json", squad_json(
      question("a", "Which city?", [answer("Paris", 0)]),
      question("b", "What?", [], is_impossible=True)))
  with flagsaver.flagsaver(version_2_with_negative=True):
    run_squad.write_official_scores(answered, {"a": "Paris", "b": ""}, {"a": -1.0, "b": 2.0},
                                    str(output))
  scores = read_json(output)
  assert (scores["exact"], scores["HasAns_total"], scores["NoAns_total"]) == (100.0, 1, 1)
  assert read_text(output).startswith('{\n    "exact": 100.0,\n')


# Bad input: one clear line.


def main_flags(tmp_path, **overrides):
  values = dict(
      vocab_file=support.VOCAB_FILE, bert_config_file=MODEL_CONFIG,
      output_dir=str(tmp_path / "out"), do_train=False, do_predict=True, train_file=None,
      predict_file=squad_file("dev-v1.1.json"), init_checkpoint=None, do_lower_case=True,
      version_2_with_negative=False, train_batch_size=32, num_train_epochs=3.0, **WINDOW_FLAGS)
  values.update(overrides)
  return values


def expect_main_error(run_squad, tmp_path, fragments, **overrides):
  """Runs main with the fixture flags and `overrides`; expects an InputError with `fragments`."""
  with flagsaver.flagsaver(**main_flags(tmp_path, **overrides)):
    with pytest.raises(script_io.InputError) as error:
      run_squad.main([])
  message = str(error.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message


@pytest.mark.parametrize("overrides, fragments", [
    ({"do_predict": False}, ["--do_train or --do_predict"]),
    ({"do_train": True}, ["--do_train needs --train_file"]),
    ({"predict_file": None}, ["--do_predict needs --predict_file"]),
    ({"predict_file": "/no/such/dev.json"}, ["--predict_file", "/no/such/dev.json"]),
    ({"doc_stride": 0}, ["--doc_stride=0 must be positive"]),
    ({"predict_batch_size": 0}, ["--predict_batch_size=0 must be positive"]),
    ({"iterations_per_loop": -1}, ["--iterations_per_loop=-1 must be positive"]),
    ({"max_query_length": 93}, ["--max_query_length=93", "no room for the context"]),
    ({"max_seq_length": 600}, ["--max_seq_length=600", "max_position_embeddings=512"]),
    ({"init_checkpoint": "/models/cased_L-12_H-768_A-12/bert_model.ckpt"},
     ["do_lower_case"]),
    ({"init_checkpoint": "/models/bert_modle.ckpt"},
     ["--init_checkpoint: no checkpoint at /models/bert_modle.ckpt"]),
    ({"vocab_file": "/no/such/vocab.txt"}, ["--vocab_file: no such file: /no/such/vocab.txt"]),
    ({"vocab_file": MODEL_CONFIG},
     ["--vocab_file: Vocabulary file %s has no [UNK] line" % MODEL_CONFIG]),
    ({"do_train": True, "train_file": squad_file("train-v1.1.json"),
      "gradient_accumulation_steps": 5},
     ["--train_batch_size=32 cannot be split into --gradient_accumulation_steps=5"]),
    ({"distribution_strategy": "multi_worker_mirrored", "export_dir": "/tmp/unused"},
     ["multi_worker_mirrored only trains: leave out --do_predict and --export_dir"]),
    ({"batch_by_length": True}, ["--batch_by_length: run_squad.py keeps every window padded"]),
])
def test_bad_flags(run_squad, tmp_path, overrides, fragments):
  expect_main_error(run_squad, tmp_path, fragments, **overrides)


def write_text(path, text):
  with open(path, "w") as writer:
    writer.write(text)
  return str(path)


@pytest.mark.parametrize("content, fragments", [
    ("this is not JSON", ["is not SQuAD JSON", "Expecting value"]),
    ('{"version": "1.1"}', ['no "data" list']),
    ('{"data": [{"title": "x"}]}', ['data[0] has no "paragraphs" list']),
    ('{"data": [{"paragraphs": [{"context": "c"}]}]}',
     ['data[0].paragraphs[0] needs a "context" string and a "qas" list']),
    ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x"}]}]}]}',
     ['data[0].paragraphs[0].qas[0] has no "question" string']),
    ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "Who?"}]}]}]}',
     ['question data[0].paragraphs[0].qas[0] \'Who?\' has no "id"']),
])
def test_predict_file_that_is_not_squad(run_squad, tmp_path, content, fragments):
  predict_file = write_text(tmp_path / "dev.json", content)
  expect_main_error(run_squad, tmp_path, [predict_file] + fragments, predict_file=predict_file)


@pytest.mark.parametrize("qa, version_2, fragments", [
    (question("two", "Where?", [answer("Paris", 0), answer("France", 24)]), False,
     ["training question two needs exactly 1 answer"]),
    (question("none", "Where?", [], is_impossible=True), False,
     ['training question none needs exactly 1 answer: it is "is_impossible", a SQuAD 2.0 '
      'question: pass --version_2_with_negative']),
    (question("no_start", "Where?", [{"text": "Paris"}]), False,
     ['the answer of question no_start needs a "text" string and an "answer_start" integer']),
    (question("v2", "Where?", [answer("Paris", 0)]), True,
     ['training question v2 needs "is_impossible": true or false']),
])
def test_malformed_training_questions(run_squad, tmp_path, qa, version_2, fragments):
  train_file = write_json(tmp_path / "train.json", squad_json(qa))
  expect_main_error(run_squad, tmp_path, [train_file] + fragments, do_train=True,
                    do_predict=False, train_file=train_file, version_2_with_negative=version_2)


def test_too_few_training_questions_for_one_step(run_squad, tmp_path):
  train_file = write_json(tmp_path / "train.json", squad_json(
      question("good", "What is the capital?", [answer("Paris", 0)])))
  expect_main_error(run_squad, tmp_path,
                    [train_file, "1 usable questions", "--train_batch_size=32"],
                    do_train=True, do_predict=False, train_file=train_file)


@pytest.mark.slow
def test_bad_input_is_one_line_on_the_command_line(tmp_path):
  predict_file = write_text(tmp_path / "dev.json", "[1, 2")
  result = support.run_script("run_squad", [
      "--vocab_file=" + support.VOCAB_FILE, "--bert_config_file=" + MODEL_CONFIG,
      "--output_dir=%s" % (tmp_path / "out"), "--do_predict=True",
      "--predict_file=" + predict_file])
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("ERROR: %s is not SQuAD JSON" % predict_file), last_line
