"""Tests of serving: --export_dir on run_classifier.py and run_squad.py, the SavedModel's
signature and outputs against Estimator.predict, the predictors on raw text against what
--do_predict writes, loading once, and bad input."""

import csv
import json
import os
import shutil

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import runner
import script_io
import serving
import support
import tensorflow.compat.v1 as tf

# Every test here trains or starts TensorFlow processes.
pytestmark = pytest.mark.slow

FLAGS = flags.FLAGS

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
PRETRAINED_CHECKPOINT = support.fixture_path("modeling", "bert_model.ckpt")
CLASSIFIER_DATA = support.fixture_path("classifier", "data")
CLASSIFIER_CHECKPOINT = support.fixture_path("classifier", "finetuned.ckpt")
SQUAD_DIR = support.fixture_path("squad")
SQUAD_VERSIONS = ("v1.1", "v2.0")

CLASSIFIER_FLAGS = [
    "--task_name=MRPC", "--max_seq_length=64", "--bert_config_file=" + MODEL_CONFIG,
    "--vocab_file=" + support.VOCAB_FILE]


def run_script(script, args, cwd=None):
  """Runs a script as a user would; fails the test, showing its output, if it fails."""
  result = support.run_script(script, args, cwd=cwd)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def read_json(path):
  with open(path) as reader:
    return json.load(reader)


def read_tsv(path):
  with open(path) as reader:
    return list(csv.reader(reader, delimiter="\t", quotechar=None))


def read_features(tf_record_file):
  """The input_ids, input_mask and segment_ids of a TFRecord of the scripts, as int arrays."""
  columns = {name: [] for name in serving.FEATURE_NAMES}
  for record in tf.io.tf_record_iterator(tf_record_file):
    feature = tf.train.Example.FromString(record).features.feature
    for name in serving.FEATURE_NAMES:
      columns[name].append(list(feature[name].int64_list.value))
  return [np.array(columns[name]) for name in serving.FEATURE_NAMES]


def read_test_results(output_dir):
  """test_results.tsv of run_classifier.py as a float array [examples, columns]."""
  return np.array([[float(value) for value in row]
                   for row in read_tsv(os.path.join(output_dir, "test_results.tsv"))])


def mrpc_test_pairs(data_dir):
  """The (text_a, text_b) pairs of an MRPC-layout test.tsv."""
  return [(row[3], row[4]) for row in read_tsv(os.path.join(data_dir, "test.tsv"))[1:]]


# ------------------------------------------------------------------------------------------------
# Classification: one run predicts the fixture's test set and exports the same checkpoint.


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
  """(output_dir, export_dir) of --do_predict --export_dir from the fine-tuned checkpoint."""
  root = tmp_path_factory.mktemp("classifier")
  output_dir, export_dir = str(root / "out"), str(root / "export")
  run_script("run_classifier", CLASSIFIER_FLAGS + [
      "--data_dir=" + CLASSIFIER_DATA, "--init_checkpoint=" + CLASSIFIER_CHECKPOINT,
      "--do_predict=true", "--predict_batch_size=8", "--output_dir=" + output_dir,
      "--export_dir=" + export_dir])
  return output_dir, export_dir


@pytest.fixture
def rc():
  return support.load_script("run_classifier")


def test_export_writes_a_numbered_version_with_the_serving_signature(classifier_run):
  _, export_dir = classifier_run
  assert os.listdir(export_dir) == ["1"]
  version_dir = os.path.join(export_dir, "1")
  assert sorted(os.listdir(version_dir)) == ["assets.extra", "saved_model.pb", "variables"]
  assert sorted(os.listdir(os.path.join(version_dir, "assets.extra"))) == [
      "bert_serving.json", "vocab.txt"]
  assert read_json(os.path.join(version_dir, "assets.extra", "bert_serving.json")) == {
      "exported_by": "run_classifier.py", "task_name": "mrpc", "labels": ["0", "1"],
      "do_lower_case": True}

  with tf.Graph().as_default(), tf.Session() as session:
    meta_graph = tf.saved_model.loader.load(session, ["serve"], version_dir)
  signature = meta_graph.signature_def["serving_default"]
  assert signature.method_name == "tensorflow/serving/predict"
  assert sorted(signature.inputs) == ["input_ids", "input_mask", "segment_ids"]
  for tensor_info in signature.inputs.values():
    assert tensor_info.dtype == tf.int32.as_datatype_enum
    assert [dim.size for dim in tensor_info.tensor_shape.dim] == [-1, 64]
  assert list(signature.outputs) == ["probabilities"]
  assert [dim.size for dim in signature.outputs["probabilities"].tensor_shape.dim] == [-1, 2]


def test_classifier_saved_model_equals_estimator_predict(classifier_run):
  output_dir, export_dir = classifier_run
  # test_results.tsv holds what Estimator.predict gave for the features in predict.tf_record.
  expected = read_test_results(output_dir)
  input_ids, input_mask, segment_ids = read_features(os.path.join(output_dir, "predict.tf_record"))
  model = serving.SavedModelPredictor(export_dir)
  assert (model.output_names, model.max_seq_length) == (["probabilities"], 64)
  for batch_size in (1, 7, len(input_ids)):
    probabilities = np.concatenate([
        model.predict(input_ids[i:i + batch_size], input_mask[i:i + batch_size],
                      segment_ids[i:i + batch_size])["probabilities"]
        for i in range(0, len(input_ids), batch_size)])
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_classifier_predictor_on_raw_text_equals_test_results(classifier_run, rc):
  output_dir, export_dir = classifier_run
  predictor = rc.ClassifierPredictor(export_dir)
  assert predictor.labels == ["0", "1"]
  predictions = [predictor.predict(a, b) for a, b in mrpc_test_pairs(CLASSIFIER_DATA)]
  np.testing.assert_allclose(predictions, read_test_results(output_dir), rtol=1e-5, atol=1e-6)


class _Counter(object):
  """Counts calls of wrapped functions and constructions of wrapped classes by name."""

  def __init__(self):
    self.counts = {}

  def function(self, name, function):
    def counted(*args, **kwargs):
      self.counts[name] = self.counts.get(name, 0) + 1
      return function(*args, **kwargs)
    return counted

  def subclass(self, name, cls):
    counter = self

    class Counted(cls):
      def __init__(self, *args, **kwargs):
        counter.counts[name] = counter.counts.get(name, 0) + 1
        super(Counted, self).__init__(*args, **kwargs)

    return Counted


def test_a_predictor_loads_once_and_builds_nothing_per_request(classifier_run, rc, monkeypatch):
  output_dir, export_dir = classifier_run
  counter = _Counter()
  monkeypatch.setattr(tf.saved_model.loader, "load",
                      counter.function("load", tf.saved_model.loader.load))
  monkeypatch.setattr(tf.train.Saver, "restore",
                      counter.function("restore", tf.train.Saver.restore))
  monkeypatch.setattr(tf, "Session", counter.subclass("Session", tf.Session))
  monkeypatch.setattr(tf, "Graph", counter.subclass("Graph", tf.Graph))

  predictor = rc.ClassifierPredictor(export_dir)
  after_load = dict(counter.counts)
  assert after_load == {"load": 1, "restore": 1, "Session": 1, "Graph": 1}
  pairs = mrpc_test_pairs(CLASSIFIER_DATA)[:5] * 6
  predictions = [predictor.predict(a, b) for a, b in pairs]
  assert counter.counts == after_load
  np.testing.assert_allclose(predictions, np.tile(read_test_results(output_dir)[:5], (6, 1)),
                             rtol=1e-5, atol=1e-6)


def test_export_alone_adds_the_next_version_which_predictors_load(classifier_run, rc,
                                                                   tmp_path):
  _, export_dir = classifier_run
  copy_dir = str(tmp_path / "export")
  tf.io.gfile.makedirs(copy_dir)
  os.symlink(os.path.join(export_dir, "1"), os.path.join(copy_dir, "1"))
  # No --data_dir, no --do_*: the checkpoint of --init_checkpoint, exported as version 2.
  support.run_main_in_process(rc, CLASSIFIER_FLAGS + [
      "--output_dir=" + str(tmp_path / "out"), "--init_checkpoint=" + CLASSIFIER_CHECKPOINT,
      "--export_dir=" + copy_dir])
  assert sorted(os.listdir(copy_dir)) == ["1", "2"]
  model = serving.SavedModelPredictor(copy_dir)
  assert model.saved_model_dir == os.path.join(copy_dir, "2")


# ------------------------------------------------------------------------------------------------
# Regression: the STS-B score, exported after training from output_dir's latest checkpoint.


def _stsb_rows(count, with_score):
  header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
            "sentence1", "sentence2"]
  rows = [header + ["score"] if with_score else header]
  words = ["red", "blue", "green", "cat", "dog", "bird", "runs", "sleeps", "eats", "fast"]
  for index in range(count):
    sentence1 = " ".join(words[index % 10:] + words[:index % 3])
    sentence2 = " ".join(words[(3 * index) % 10:][:5])
    row = [str(index), "main-captions", "MSRvid", "2012test", "%04d" % index, "none", "none",
           sentence1, sentence2]
    rows.append(row + ["%.1f" % (index % 6)] if with_score else row)
  return rows


def test_regression_export_serves_the_score_of_the_trained_checkpoint(rc, tmp_path):
  data_dir = str(tmp_path / "STS-B")
  os.makedirs(data_dir)
  for name, rows in (("train.tsv", _stsb_rows(8, True)), ("test.tsv", _stsb_rows(5, False))):
    with open(os.path.join(data_dir, name), "w") as writer:
      writer.writelines("\t".join(row) + "\n" for row in rows)
  output_dir, export_dir = str(tmp_path / "out"), str(tmp_path / "export")
  # The pre-trained checkpoint has no regression head: the export must take the trained one.
  run_script("run_classifier", [
      "--task_name=STS-B", "--data_dir=" + data_dir, "--output_dir=" + output_dir,
      "--bert_config_file=" + MODEL_CONFIG, "--vocab_file=" + support.VOCAB_FILE,
      "--init_checkpoint=" + PRETRAINED_CHECKPOINT, "--do_train=true", "--do_predict=true",
      "--max_seq_length=32", "--train_batch_size=4", "--num_train_epochs=1",
      "--learning_rate=1e-2", "--export_dir=" + export_dir])

  expected = read_test_results(output_dir)[:, 0]
  model = serving.SavedModelPredictor(export_dir)
  assert model.output_names == ["score"]
  scores = model.predict(*read_features(os.path.join(output_dir, "predict.tf_record")))["score"]
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)

  predictor = rc.ClassifierPredictor(export_dir)
  assert predictor.labels is None
  rows = read_tsv(os.path.join(data_dir, "test.tsv"))[1:]
  np.testing.assert_allclose([predictor.predict(row[7], row[8]) for row in rows], expected,
                             rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# SQuAD: predictions.json of --do_predict and the exported model, from the same checkpoint.


@pytest.fixture(scope="module")
def squad_runs(tmp_path_factory):
  """version -> (output_dir, export_dir) of --do_predict --export_dir on the fixtures."""
  runs = {}
  for version in SQUAD_VERSIONS:
    root = tmp_path_factory.mktemp("squad-" + version)
    output_dir, export_dir = str(root / "out"), str(root / "export")
    with open(os.path.join(SQUAD_DIR, "flags-%s.txt" % version)) as reader:
      fixture_flags = reader.read().split()
    run_script("run_squad", fixture_flags + [
        "--do_predict=True", "--predict_file=dev-%s.json" % version,
        "--init_checkpoint=finetuned-%s.ckpt" % version, "--predict_batch_size=8",
        "--output_dir=" + output_dir, "--export_dir=" + export_dir], cwd=SQUAD_DIR)
    runs[version] = output_dir, export_dir
  return runs


@pytest.fixture
def run_squad():
  module = support.load_script("run_squad")
  FLAGS.mark_as_parsed()
  return module


def test_squad_saved_model_logits_equal_estimator_predict(squad_runs, run_squad, tmp_path):
  output_dir, export_dir = squad_runs["v1.1"]
  eval_file = os.path.join(output_dir, "eval.tf_record")
  bert_config = run_squad.modeling.BertConfig.from_json_file(MODEL_CONFIG)
  model_fn = run_squad.model_fn_builder(
      bert_config=bert_config, init_checkpoint=os.path.join(SQUAD_DIR, "finetuned-v1.1.ckpt"),
      learning_rate=5e-5, num_train_steps=None, num_warmup_steps=None, use_tpu=False,
      use_one_hot_embeddings=False)
  estimator = runner.Runner(model_fn, str(tmp_path), predict_batch_size=8)
  results = list(estimator.predict(run_squad.input_fn_builder(
      input_file=eval_file, seq_length=96, is_training=False, drop_remainder=False)))

  outputs = serving.SavedModelPredictor(export_dir).predict(*read_features(eval_file))
  assert sorted(outputs) == ["end_logits", "start_logits"]
  for name in ("start_logits", "end_logits"):
    np.testing.assert_allclose(outputs[name], [result[name] for result in results],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("version", SQUAD_VERSIONS)
def test_squad_predictor_answers_equal_predictions_json(squad_runs, run_squad, version):
  output_dir, export_dir = squad_runs[version]
  predictions = read_json(os.path.join(output_dir, "predictions.json"))
  nbest_predictions = read_json(os.path.join(output_dir, "nbest_predictions.json"))
  predictor = run_squad.SquadPredictor(export_dir)
  num_questions = 0
  for article in read_json(os.path.join(SQUAD_DIR, "dev-%s.json" % version))["data"]:
    for paragraph in article["paragraphs"]:
      for qa in paragraph["qas"]:
        prediction = predictor.predict(qa["question"], paragraph["context"])
        assert prediction.text == predictions[qa["id"]], qa["id"]
        expected_nbest = nbest_predictions[qa["id"]]
        assert [entry["text"] for entry in prediction.nbest] == [
            entry["text"] for entry in expected_nbest]
        for entry, expected_entry in zip(prediction.nbest, expected_nbest):
          for key in ("probability", "start_logit", "end_logit"):
            assert entry[key] == pytest.approx(expected_entry[key], abs=1e-5), (qa["id"], key)
        num_questions += 1
  assert num_questions == len(predictions)
  if version == "v2.0":
    null_odds = read_json(os.path.join(output_dir, "null_odds.json"))
    assert any(text == "" for text in predictions.values())
    qa = read_json(os.path.join(SQUAD_DIR, "dev-v2.0.json"))["data"][0]["paragraphs"][0]
    prediction = predictor.predict(qa["qas"][0]["question"], qa["context"])
    assert prediction.null_odds == pytest.approx(null_odds[qa["qas"][0]["id"]], abs=1e-5)
  else:
    assert prediction.null_odds is None


def test_squad_predictor_copes_with_an_empty_context(squad_runs, run_squad):
  prediction = run_squad.SquadPredictor(squad_runs["v2.0"][1]).predict("Who?", "  ")
  assert prediction.text == ""
  assert [entry["text"] for entry in prediction.nbest] == [""]


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors.


@pytest.mark.parametrize("extra_flags, fragments", [
    ([], ["--export_dir needs a checkpoint: there is none in --output_dir=",
          "and no --init_checkpoint"]),
    (["--init_checkpoint=/no/such/model.ckpt"],
     ["--init_checkpoint=/no/such/model.ckpt is not a checkpoint"]),
    (["--init_checkpoint=" + PRETRAINED_CHECKPOINT],
     ["has no variable output_weights of the model", "export a fine-tuned checkpoint"]),
    (["--init_checkpoint=" + CLASSIFIER_CHECKPOINT, "--task_name=MNLI"],
     ["variable output_weights has shape [2, 64] in checkpoint", "but [3, 64] in the model"]),
])
def test_classifier_export_without_a_usable_checkpoint(rc, tmp_path, extra_flags, fragments):
  export_dir = str(tmp_path / "export")
  with pytest.raises(script_io.InputError) as error:
    support.run_main_in_process(rc, CLASSIFIER_FLAGS + [
        "--output_dir=" + str(tmp_path / "out"), "--export_dir=" + export_dir] + extra_flags)
  for fragment in fragments:
    assert fragment in str(error.value), str(error.value)
  # Nothing half-written is left for TensorFlow Serving to find.
  assert not os.path.exists(export_dir) or os.listdir(export_dir) == []


def test_squad_export_without_a_checkpoint(run_squad, tmp_path):
  with flagsaver.flagsaver(
      vocab_file=support.VOCAB_FILE, bert_config_file=MODEL_CONFIG,
      output_dir=str(tmp_path / "out"), export_dir=str(tmp_path / "export"), do_train=False,
      do_predict=False, init_checkpoint=None, max_seq_length=96, max_query_length=24,
      doc_stride=32):
    with pytest.raises(script_io.InputError, match="--export_dir needs a checkpoint"):
      run_squad.main([])


def test_multi_worker_training_refuses_to_export(rc, tmp_path):
  with pytest.raises(script_io.InputError, match=r"multi_worker_mirrored only trains: leave out "
                                                 r"--export_dir, and evaluate, predict or export"):
    support.run_main_in_process(rc, CLASSIFIER_FLAGS + [
        "--data_dir=" + CLASSIFIER_DATA, "--do_train=true", "--output_dir=" + str(tmp_path),
        "--export_dir=" + str(tmp_path / "export"),
        "--distribution_strategy=multi_worker_mirrored"])
  assert os.listdir(str(tmp_path)) == []


def test_the_do_flags_error_names_export_dir(rc):
  with pytest.raises(script_io.InputError, match=r"--do_predict must be true, or --export_dir"):
    support.run_main_in_process(rc, CLASSIFIER_FLAGS + ["--output_dir=/tmp/unused"])


def test_a_predictor_on_a_folder_that_is_not_a_saved_model(rc, tmp_path):
  for path in (str(tmp_path), str(tmp_path / "missing"), CLASSIFIER_DATA):
    with pytest.raises(ValueError, match=r"is not a SavedModel: no saved_model.pb in it"):
      rc.ClassifierPredictor(path)


def test_a_predictor_on_another_tasks_saved_model(rc, squad_runs):
  with pytest.raises(ValueError, match=r"was not exported by run_classifier.py --export_dir "
                                       r"\(by run_squad.py\)"):
    rc.ClassifierPredictor(squad_runs["v1.1"][1])


def test_a_saved_model_without_the_bert_signature(tmp_path):
  with tf.Graph().as_default(), tf.Session() as session:
    values = tf.placeholder(tf.float32, [None, 3], name="values")
    tf.saved_model.simple_save(session, str(tmp_path / "model"), inputs={"values": values},
                               outputs={"doubled": 2.0 * values})
  with pytest.raises(ValueError, match=r"must take exactly the inputs input_ids, input_mask, "
                                       r"segment_ids"):
    serving.SavedModelPredictor(str(tmp_path / "model"))


def test_a_saved_model_without_the_settings_of_a_script(classifier_run, rc, tmp_path):
  model_dir = str(tmp_path / "model")
  shutil.copytree(os.path.join(classifier_run[1], "1"), model_dir)
  os.remove(os.path.join(model_dir, "assets.extra", "bert_serving.json"))
  assert serving.SavedModelPredictor(model_dir).settings is None
  with pytest.raises(ValueError, match=r"not exported by run_classifier.py --export_dir \(no "
                                       r"assets.extra/bert_serving.json\)"):
    rc.ClassifierPredictor(model_dir)


def test_inputs_of_the_wrong_shape(classifier_run):
  model = serving.SavedModelPredictor(classifier_run[1])
  ids = np.zeros([2, 64], dtype=np.int32)
  with pytest.raises(ValueError, match=r"input_ids has shape \[2, 32\]; the model takes three "
                                       r"\[batch_size, 64\] arrays"):
    model.predict(ids[:, :32], ids, ids)
  with pytest.raises(ValueError, match=r"segment_ids has shape \[1, 64\]"):
    model.predict(ids, ids, ids[:1])
