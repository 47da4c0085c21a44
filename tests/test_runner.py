"""Tests of runner.Runner, which trains, evaluates and predicts without tf.estimator.

Where TensorFlow has tf.estimator (2.15), the runner and TPUEstimator run the same model_fns side
by side and must agree to the bit: run_classifier's model_fn on the fixture checkpoint
(evaluation, predictions and training steps), and a tiny BERT whose checkpoints each resumes
from the other. Everywhere, the runner must reproduce the original's evaluation of the fixture,
resume, keep its checkpoints, train on two mirrored CPUs and on two worker processes as on one
device, and stop on SIGINT or SIGTERM with a checkpoint. Training under strategies and signals
runs in subprocesses through tests/runner_driver.py.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import estimator_setup
import modeling
import runner
import runner_driver
import support
import tokenization

needs_estimator = support.needs_tf_estimator

TIMEOUT_SECONDS = 300
CLASSIFIER_CHECKPOINT = support.fixture_path("classifier", "finetuned.ckpt")
CLASSIFIER_SEQ_LENGTH = 64


def test_mode_keys_are_strings():
  assert (runner.ModeKeys.TRAIN, runner.ModeKeys.EVAL, runner.ModeKeys.PREDICT) == (
      "train", "eval", "infer")


@needs_estimator
def test_mode_keys_are_those_of_tf_estimator():
  assert runner.ModeKeys.TRAIN == tf.estimator.ModeKeys.TRAIN
  assert runner.ModeKeys.EVAL == tf.estimator.ModeKeys.EVAL
  assert runner.ModeKeys.PREDICT == tf.estimator.ModeKeys.PREDICT


def test_model_spec_defaults():
  spec = runner.ModelSpec(mode=runner.ModeKeys.PREDICT, predictions={"x": tf.constant([1])})
  assert (spec.loss, spec.train_op, spec.eval_metrics, spec.scaffold_fn) == (None,) * 4
  assert spec.training_hooks == spec.evaluation_hooks == spec.prediction_hooks == ()


@needs_estimator
def test_model_spec_has_the_defaults_of_tpu_estimator_spec():
  with tf.Graph().as_default():
    predictions = {"x": tf.constant([1])}
    ours = runner.ModelSpec(mode=runner.ModeKeys.PREDICT, predictions=predictions)._asdict()
    theirs = tf.estimator.tpu.TPUEstimatorSpec(
        mode=tf.estimator.ModeKeys.PREDICT, predictions=predictions)._asdict()
  assert ours == {name: theirs[name] for name in ours}


# ------------------------------------------------------------------------------------------------
# run_classifier's model_fn on the fixture checkpoint.

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  """Writes the fixture's MRPC sets as TFRecords; returns (model_fn builder, input_fns)."""
  rc = support.load_script("run_classifier")
  directory = tmp_path_factory.mktemp("classifier")
  processor = rc.MrpcProcessor()
  data_dir = support.fixture_path("classifier", "data")
  tokenizer = tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)
  input_fns = {}
  for name, examples, is_training in (
      ("train", processor.get_train_examples(data_dir), True),
      ("eval", processor.get_dev_examples(data_dir), False),
      ("predict", processor.get_test_examples(data_dir), False)):
    path = str(directory / (name + ".tf_record"))
    rc.file_based_convert_examples_to_features(
        examples, processor.get_labels(), CLASSIFIER_SEQ_LENGTH, tokenizer, path)
    # Training too reads the records in order, once: both trainers see the same batches.
    input_fns[name] = rc.file_based_input_fn_builder(
        path, CLASSIFIER_SEQ_LENGTH, is_training=False, drop_remainder=is_training)
  bert_config = modeling.BertConfig.from_json_file(
      support.fixture_path("modeling", "bert_config.json"))

  def model_fn(learning_rate=5e-5, num_train_steps=None):
    return rc.model_fn_builder(
        bert_config, num_labels=2, init_checkpoint=CLASSIFIER_CHECKPOINT,
        learning_rate=learning_rate, num_train_steps=num_train_steps,
        num_warmup_steps=num_train_steps and 1, use_tpu=False, use_one_hot_embeddings=False)

  return model_fn, input_fns


def _classifier_runner(model_fn, model_dir, **kwargs):
  return runner.Runner(model_fn, model_dir, train_batch_size=8, eval_batch_size=8,
                       predict_batch_size=8, save_checkpoints_steps=100, **kwargs)


def _tpu_estimator(model_fn, model_dir):
  """The TPUEstimator of the scripts off TPU, batch 8."""
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=False, model_fn=estimator_setup.tpu_estimator_model_fn(model_fn),
      config=tf.estimator.tpu.RunConfig(model_dir=model_dir, save_checkpoints_steps=100),
      train_batch_size=8, eval_batch_size=8, predict_batch_size=8)


def _eval_results_text(result):
  """The lines run_classifier writes to eval_results.txt."""
  return "".join("%s = %s\n" % (name, result[name]) for name in sorted(result))


def _probabilities(predictions):
  return np.array([prediction["probabilities"] for prediction in predictions])


@pytest.mark.slow
def test_classifier_evaluation_equals_the_original(classifier, tmp_path):
  model_fn, input_fns = classifier
  result = _classifier_runner(model_fn(), str(tmp_path)).evaluate(input_fns["eval"])
  with open(support.fixture_path("classifier", "reference_eval_results.txt")) as reader:
    assert _eval_results_text(result) == reader.read()
  assert os.listdir(tmp_path / "eval")


@pytest.mark.slow
def test_classifier_predictions_equal_the_original(classifier, tmp_path):
  model_fn, input_fns = classifier
  probabilities = _probabilities(
      _classifier_runner(model_fn(), str(tmp_path)).predict(input_fns["predict"]))
  reference = np.loadtxt(support.fixture_path("classifier", "reference_test_results.tsv"))
  assert probabilities.shape == reference.shape == (40, 2)
  # The fixture's last float32 digit differs here and there, the Estimator's alike.
  np.testing.assert_allclose(probabilities, reference, rtol=0, atol=1e-6)


@pytest.mark.slow
@needs_estimator
def test_classifier_evaluation_and_predictions_equal_tpu_estimator(classifier, tmp_path):
  model_fn, input_fns = classifier
  ours = _classifier_runner(model_fn(), str(tmp_path / "runner"))
  theirs = _tpu_estimator(model_fn(), str(tmp_path / "estimator"))
  assert ours.evaluate(input_fns["eval"]) == theirs.evaluate(input_fns["eval"])
  np.testing.assert_array_equal(_probabilities(ours.predict(input_fns["predict"])),
                                _probabilities(theirs.predict(input_fns["predict"])))


@pytest.fixture
def without_dropout(monkeypatch):
  """Makes tf.nn.dropout the identity: two graphs never draw the same dropout masks."""
  monkeypatch.setattr(tf.nn, "dropout", lambda x, rate=None, **unused_kwargs: x)


@pytest.mark.slow
@needs_estimator
def test_classifier_training_steps_equal_tpu_estimator(classifier, tmp_path, without_dropout):
  model_fn, input_fns = classifier
  training_model_fn = model_fn(learning_rate=1e-3, num_train_steps=10)
  ours = _classifier_runner(training_model_fn, str(tmp_path / "runner"))
  theirs = _tpu_estimator(training_model_fn, str(tmp_path / "estimator"))
  ours.train(input_fns["train"], max_steps=3)
  theirs.train(input_fns["train"], max_steps=3)
  _assert_same_checkpoints(str(tmp_path / "runner"), str(tmp_path / "estimator"), exact=True)
  initial = tf.train.load_checkpoint(CLASSIFIER_CHECKPOINT).get_tensor("output_weights")
  trained = tf.train.load_checkpoint(str(tmp_path / "runner")).get_tensor("output_weights")
  assert not np.allclose(trained, initial, rtol=0, atol=1e-4)
  assert ours.evaluate(input_fns["eval"]) == theirs.evaluate(input_fns["eval"])


def _assert_same_checkpoints(actual_path, expected_path, exact=False):
  """Compares every variable of two checkpoints (or model dirs' latest ones), slots too."""
  actual = tf.train.load_checkpoint(actual_path)
  expected = tf.train.load_checkpoint(expected_path)
  names = sorted(expected.get_variable_to_shape_map())
  assert sorted(actual.get_variable_to_shape_map()) == names
  assert any(name.endswith("/adam_v") for name in names)
  for name in names:
    if exact:
      np.testing.assert_array_equal(actual.get_tensor(name), expected.get_tensor(name), name)
    else:
      np.testing.assert_allclose(actual.get_tensor(name), expected.get_tensor(name),
                                 rtol=1e-5, atol=CHECKPOINT_ATOL, err_msg=name)


# Replicas and micro-batches sum the gradients in another order; Adam turns that rounding into
# weight changes of a small fraction of the learning rate (see tests/test_distribution.py).
CHECKPOINT_ATOL = 1e-5


# ------------------------------------------------------------------------------------------------
# A tiny BERT, in this process.

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  """Returns (bert_config_file, init_checkpoint) of the driver's tiny BERT."""
  directory = tmp_path_factory.mktemp("tiny_model")
  bert_config_file = str(directory / "bert_config.json")
  with open(bert_config_file, "w") as writer:
    json.dump(runner_driver.BERT_CONFIG, writer)
  init_checkpoint = str(directory / "init" / "bert_model.ckpt")
  runner_driver.write_init_checkpoint(runner_driver.BERT_CONFIG, init_checkpoint)
  return bert_config_file, init_checkpoint


def _tiny_runner(tiny_model, model_dir, **kwargs):
  settings = dict(train_batch_size=8, eval_batch_size=16, predict_batch_size=16,
                  save_checkpoints_steps=100, log_step_count_steps=1)
  settings.update(kwargs)
  return runner.Runner(runner_driver.model_fn_builder(*tiny_model), model_dir, **settings)


def _checkpoint_steps(model_dir):
  """The global steps of the checkpoints listed in model_dir's "checkpoint" file."""
  state = tf.train.get_checkpoint_state(model_dir)
  return [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_resumed_training_equals_one_run(tiny_model, tmp_path):
  straight = str(tmp_path / "straight")
  _tiny_runner(tiny_model, straight).train(runner_driver.one_batch_input_fn, max_steps=4)
  resumed = str(tmp_path / "resumed")
  _tiny_runner(tiny_model, resumed).train(runner_driver.one_batch_input_fn, max_steps=2)
  _tiny_runner(tiny_model, resumed).train(runner_driver.one_batch_input_fn, max_steps=4)
  assert _checkpoint_steps(resumed) == [0, 2, 4]
  _assert_same_checkpoints(resumed, straight)
  # At max_steps already: nothing to do.
  _tiny_runner(tiny_model, resumed).train(runner_driver.one_batch_input_fn, max_steps=3)
  assert _checkpoint_steps(resumed) == [0, 2, 4]


@pytest.mark.slow
def test_keeps_the_last_keep_checkpoint_max_checkpoints(tiny_model, tmp_path):
  model_dir = str(tmp_path)
  _tiny_runner(tiny_model, model_dir, save_checkpoints_steps=2, keep_checkpoint_max=2).train(
      runner_driver.train_input_fn, max_steps=7)
  assert _checkpoint_steps(model_dir) == [6, 7]
  assert sorted(name for name in os.listdir(model_dir) if name.endswith(".index")) == [
      "model.ckpt-6.index", "model.ckpt-7.index"]


def _summary_tags(directory):
  tags = set()
  for events_file in tf.io.gfile.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.train.summary_iterator(events_file):
      tags.update(value.tag for value in event.summary.value)
  return tags


@pytest.mark.slow
def test_model_dir_layout_and_summaries(tiny_model, tmp_path):
  model_dir = str(tmp_path)
  trainer = _tiny_runner(tiny_model, model_dir, save_checkpoints_steps=2)
  trainer.train(runner_driver.train_input_fn, max_steps=3)
  trainer.evaluate(runner_driver.eval_input_fn, name="dev")
  files = {name if not name.startswith("events.out.tfevents.") else "events"
           for name in os.listdir(model_dir)}
  assert files == {"checkpoint", "graph.pbtxt", "events", "eval_dev"} | {
      "model.ckpt-%d.%s" % (step, suffix) for step in (0, 2, 3)
      for suffix in ("index", "meta", "data-00000-of-00001")}
  assert {"loss", "global_step/sec", "examples/sec"} <= _summary_tags(model_dir)
  assert {"loss", "example_loss"} <= _summary_tags(os.path.join(model_dir, "eval_dev"))


@pytest.mark.slow
@needs_estimator
def test_checkpoints_resume_across_tpu_estimator_and_runner(tiny_model, tmp_path):
  straight = str(tmp_path / "runner_only")
  _tiny_runner(tiny_model, straight).train(runner_driver.one_batch_input_fn, max_steps=6)
  model_dir = str(tmp_path / "both")
  estimator = tf.estimator.tpu.TPUEstimator(
      use_tpu=False,
      model_fn=runner_driver.model_fn_builder(
          *tiny_model, spec_type=tf.estimator.tpu.TPUEstimatorSpec),
      config=tf.estimator.tpu.RunConfig(model_dir=model_dir, save_checkpoints_steps=100),
      train_batch_size=8, eval_batch_size=16)
  estimator.train(runner_driver.one_batch_input_fn, max_steps=2)
  _tiny_runner(tiny_model, model_dir).train(runner_driver.one_batch_input_fn, max_steps=4)
  estimator.train(runner_driver.one_batch_input_fn, max_steps=6)
  assert _checkpoint_steps(model_dir) == [0, 2, 4, 6]
  _assert_same_checkpoints(model_dir, straight)
  assert (_tiny_runner(tiny_model, model_dir).evaluate(runner_driver.eval_input_fn) ==
          estimator.evaluate(runner_driver.eval_input_fn))


def _counting_model_fn(predictions=None, metric_fn=None):
  """A model_fn without variables on the batches of `_count_input_fn`.

  Args:
    predictions: function of the features -> the PREDICT mode's predictions.
    metric_fn: the EVAL mode's metric_fn, of x (the features' x as float32 [batch_size]); the
      loss is the batch's mean of x.
  """

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    if mode == runner.ModeKeys.PREDICT:
      return runner.ModelSpec(mode=mode, predictions=predictions(features))
    x = tf.cast(features["x"], tf.float32)
    return runner.ModelSpec(mode=mode, loss=tf.reduce_mean(x), eval_metrics=(metric_fn, [x]))

  return model_fn


def _count_input_fn(params):
  """0 to 4 in batches of params["batch_size"]: {"x": int64 [batch_size]}."""
  return tf.data.Dataset.range(5).map(lambda x: {"x": x}).batch(params["batch_size"])


def test_predict_yields_examples_or_batches(tmp_path):
  model_fn = _counting_model_fn(predictions=lambda features: {"double": 2 * features["x"]})
  predictor = runner.Runner(model_fn, str(tmp_path), predict_batch_size=2)
  assert [p["double"] for p in predictor.predict(_count_input_fn)] == [0, 2, 4, 6, 8]
  batches = list(predictor.predict(_count_input_fn, yield_single_examples=False))
  assert [batch["double"].tolist() for batch in batches] == [[0, 2], [4, 6], [8]]
  plain = runner.Runner(_counting_model_fn(predictions=lambda features: features["x"] + 1),
                        str(tmp_path), predict_batch_size=2)
  assert list(plain.predict(_count_input_fn)) == [1, 2, 3, 4, 5]


def test_predictions_of_different_batch_lengths_are_refused(tmp_path):
  model_fn = _counting_model_fn(
      predictions=lambda features: {"x": features["x"], "first": features["x"][:1]})
  predictor = runner.Runner(model_fn, str(tmp_path), predict_batch_size=2)
  with pytest.raises(ValueError) as error:
    list(predictor.predict(_count_input_fn))
  assert str(error.value) == (
      "the predictions of a batch hold different numbers of examples: first 1, x 2")


def test_evaluate_reports_the_mean_loss_of_the_batches(tmp_path):
  model_fn = _counting_model_fn(metric_fn=lambda x: {"mean_x": tf.metrics.mean(x)})
  evaluator = runner.Runner(model_fn, str(tmp_path), eval_batch_size=2)
  # Batches [0, 1], [2, 3], [4]: the examples' mean is 2, the batches' mean loss 7/3.
  assert evaluator.evaluate(_count_input_fn) == {
      "mean_x": 2.0, "loss": np.float32(7.0 / 3.0), "global_step": 0}
  assert evaluator.evaluate(_count_input_fn, steps=1) == {
      "mean_x": 0.5, "loss": 0.5, "global_step": 0}


def test_a_metric_named_loss_is_refused(tmp_path):
  model_fn = _counting_model_fn(metric_fn=lambda x: {"loss": tf.metrics.mean(x)})
  with pytest.raises(ValueError) as error:
    runner.Runner(model_fn, str(tmp_path), eval_batch_size=2).evaluate(_count_input_fn)
  assert "may not be named \"loss\"" in str(error.value)


# ------------------------------------------------------------------------------------------------
# Strategies, workers and signals, in subprocesses.

def _python_env(**extra):
  return dict(os.environ, PYTHONPATH=os.pathsep.join([support.REPO_DIR, os.path.dirname(
      os.path.abspath(__file__))]), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)


def _driver_command(directory, name, tiny_model, runs, **settings):
  """Writes a driver spec; returns (argv, results file)."""
  bert_config_file, init_checkpoint = tiny_model
  results_file = str(directory / (name + "_results.json"))
  spec = dict(settings, runs=runs, bert_config_file=bert_config_file,
              init_checkpoint=init_checkpoint, results_file=results_file)
  spec_file = directory / (name + ".json")
  spec_file.write_text(json.dumps(spec))
  return [sys.executable, runner_driver.__file__, str(spec_file)], results_file


def _run(name, model_dir, strategy, max_steps, train_batch_size=8, accumulation_steps=1):
  return {"name": name, "model_dir": str(model_dir), "strategy": strategy,
          "max_steps": max_steps, "train_batch_size": train_batch_size,
          "accumulation_steps": accumulation_steps, "save_checkpoints_steps": 100}


@pytest.fixture(scope="module")
def distributed(tiny_model, tmp_path_factory):
  """Trains the tiny BERT on one device, two mirrored CPUs and two workers, 3 steps and 5.

  Each run of two steps more resumes from the checkpoint of step 3 and restarts the input.

  Returns:
    (directory of the runs, dict of run name -> {"eval_loss", "global_step"} or {"error"}).
  """
  directory = tmp_path_factory.mktemp("distributed")
  runs = [
      _run("one_device", directory / "one_device", "none", 3),
      _run("one_device_resumed", directory / "one_device", "none", 5),
      _run("one_device_2_micro_batches", directory / "one_device_2_micro_batches", "none", 3,
           train_batch_size=4, accumulation_steps=2),
      _run("mirrored", directory / "mirrored", "mirrored", 3),
      _run("mirrored_2_micro_batches", directory / "mirrored_2_micro_batches", "mirrored", 3,
           train_batch_size=4, accumulation_steps=2),
      _run("mirrored_odd_batch", directory / "mirrored_odd_batch", "mirrored", 3,
           train_batch_size=7),
  ]
  argv, results_file = _driver_command(directory, "single", tiny_model, runs, logical_cpus=2)
  [(returncode, output)] = support.run_processes([("single", argv, _python_env())], directory,
                                                  TIMEOUT_SECONDS)
  assert returncode == 0, output[-3000:]
  with open(results_file) as reader:
    results = json.load(reader)

  # A cluster of two workers, started twice: the second time both resume from the checkpoint.
  for max_steps in (3, 5):
    cluster = {"worker": ["127.0.0.1:%d" % support.free_port() for _ in range(2)]}
    commands = []
    for index in range(2):
      name = "worker_%d_to_%d" % (index, max_steps)
      argv, _ = _driver_command(directory, name, tiny_model, [
          _run("two_workers", directory / "two_workers", "multi_worker", max_steps,
               train_batch_size=8)])
      tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
      commands.append((name, argv, _python_env(TF_CONFIG=json.dumps(tf_config))))
    worker_outputs = support.run_processes(commands, directory, TIMEOUT_SECONDS)
    for (name, _, _), (returncode, output) in zip(commands, worker_outputs):
      assert returncode == 0, "%s:\n%s" % (name, output[-3000:])
  return directory, results


@pytest.mark.slow
@pytest.mark.parametrize("run", ["mirrored", "mirrored_2_micro_batches",
                                 "one_device_2_micro_batches"])
def test_replicas_and_micro_batches_train_as_one_device(distributed, run):
  directory, results = distributed
  _assert_same_checkpoints(str(directory / run), str(directory / "one_device" / "model.ckpt-3"))
  assert results[run]["global_step"] == 3
  assert results[run]["eval_loss"] == pytest.approx(results["one_device"]["eval_loss"],
                                                    rel=1e-5)


@pytest.mark.slow
def test_training_moved_the_weights(distributed, tiny_model):
  directory, _ = distributed
  trained = tf.train.load_checkpoint(str(directory / "one_device")).get_tensor("cls/kernel")
  initial = tf.train.load_checkpoint(tiny_model[1]).get_tensor("cls/kernel")
  assert not np.allclose(trained, initial, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("step", [3, 5])
def test_two_workers_train_and_resume_as_one_device(distributed, step):
  directory, _ = distributed
  _assert_same_checkpoints(str(directory / "two_workers" / ("model.ckpt-%d" % step)),
                           str(directory / "one_device" / ("model.ckpt-%d" % step)))


@pytest.mark.slow
def test_only_the_chief_writes_to_the_model_dir(distributed):
  directory, _ = distributed
  model_dir = directory / "two_workers"
  assert _checkpoint_steps(str(model_dir)) == [0, 3, 5]
  # One events file per run of the chief; the other worker writes none.
  assert len([name for name in os.listdir(model_dir) if name.startswith("events.")]) == 2
  assert not [name for name in os.listdir(model_dir) if os.path.isdir(model_dir / name)]


@pytest.mark.slow
def test_batch_not_shared_evenly_by_replicas(distributed):
  _, results = distributed
  assert results["mirrored_odd_batch"] == {
      "error": "train_batch_size=7 cannot be shared evenly by 2 replicas"}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_with_a_checkpoint_to_resume_from(tiny_model, tmp_path,
                                                                    signum):
  model_dir = tmp_path / "model"
  endless = dict(_run("endless", model_dir, "none", 10 ** 9), save_checkpoints_steps=10 ** 6)
  argv, _ = _driver_command(tmp_path, "endless", tiny_model, [endless])
  process = subprocess.Popen(argv, env=_python_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  try:
    # The driver logs the loss of every step; the first line means training is under way.
    output = []
    for line in process.stdout:
      output.append(line)
      if "loss = " in line:
        process.send_signal(signum)
        break
    output.append(process.communicate(timeout=TIMEOUT_SECONDS)[0])
  finally:
    support.kill_running([process])
  output = "".join(output)
  assert process.returncode == 3, output[-3000:]
  checkpoint_path = tf.train.latest_checkpoint(str(model_dir))
  step = int(checkpoint_path.rsplit("-", 1)[1])
  assert 0 < step < 10 ** 6
  assert ("INTERRUPTED: training stopped by %s; the latest checkpoint is %s: training again "
          "resumes from it" % (signal.Signals(signum).name, checkpoint_path)) in output
  _tiny_runner(tiny_model, str(model_dir)).train(runner_driver.train_input_fn,
                                                 max_steps=step + 1)
  assert _checkpoint_steps(str(model_dir))[-2:] == [step, step + 1]


@pytest.mark.slow
def test_a_second_signal_ends_the_process_at_once(tmp_path):
  script = tmp_path / "twice.py"
  script.write_text(textwrap.dedent("""
      import os
      import signal
      import runner
      with runner._StopOnSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        print("first:", stop.signal_name, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("still running", flush=True)
  """))
  result = subprocess.run([sys.executable, str(script)], env=_python_env(), capture_output=True,
                          text=True, timeout=TIMEOUT_SECONDS)
  assert result.returncode == -signal.SIGINT, result.stderr[-3000:]
  assert result.stdout == "first: SIGINT\n"


@pytest.mark.slow
def test_a_dead_worker_stops_the_other(tiny_model, tmp_path):
  cluster = {"worker": ["127.0.0.1:%d" % support.free_port() for _ in range(2)]}
  endless = _run("endless", tmp_path / "model", "multi_worker", 10 ** 9)
  processes = []
  for index in range(2):
    argv, _ = _driver_command(tmp_path, "worker_%d" % index, tiny_model, [endless])
    env = _python_env(TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    with open(tmp_path / ("worker_%d.log" % index), "w") as log:
      processes.append(subprocess.Popen(
          argv, env=env, stdout=subprocess.PIPE if index else log, stderr=subprocess.STDOUT,
          text=True))
  chief, worker = processes
  try:
    # Both workers are training once the second one has logged a step's loss.
    for line in worker.stdout:
      if "loss = " in line:
        worker.kill()
        break
    chief.wait(timeout=TIMEOUT_SECONDS)
  finally:
    support.kill_running(processes)
  assert worker.returncode == -signal.SIGKILL
  assert chief.returncode == 1
  assert "UnavailableError" in (tmp_path / "worker_0.log").read_text()


@pytest.mark.slow
def test_a_signal_to_one_worker_stops_all_at_the_same_step(tiny_model, tmp_path):
  model_dir = tmp_path / "model"
  cluster = {"worker": ["127.0.0.1:%d" % support.free_port() for _ in range(2)]}

  def run_workers(max_steps, signal_worker_1=False):
    """Trains on both workers; returns their exit codes and outputs.

    The chief's output goes to a file; worker 1's is read from a pipe, as it comes.
    """
    commands = []
    for index in range(2):
      argv, _ = _driver_command(tmp_path, "worker_%d" % index, tiny_model, [
          dict(_run("cluster", model_dir, "multi_worker", max_steps),
               save_checkpoints_steps=10 ** 6)])
      commands.append((argv, _python_env(TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}}))))
    chief_log = tmp_path / "chief.log"
    with open(chief_log, "w") as log:
      chief = subprocess.Popen(commands[0][0], env=commands[0][1], stdout=log,
                               stderr=subprocess.STDOUT)
    worker = subprocess.Popen(commands[1][0], env=commands[1][1], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    processes = [chief, worker]
    worker_output = []
    try:
      if signal_worker_1:
        # Worker 1 logs "loss = " after its first step: both are training.
        for line in worker.stdout:
          worker_output.append(line)
          if "loss = " in line:
            worker.send_signal(signal.SIGINT)
            break
      worker_output.append(worker.communicate(timeout=TIMEOUT_SECONDS)[0])
      chief.wait(timeout=TIMEOUT_SECONDS)
    finally:
      support.kill_running(processes)
    return ([chief.returncode, worker.returncode],
            [chief_log.read_text(), "".join(worker_output)])

  codes, (chief_log, worker_log) = run_workers(10 ** 9, signal_worker_1=True)
  assert codes == [3, 3], chief_log[-3000:] + worker_log[-3000:]
  checkpoint_path = tf.train.latest_checkpoint(str(model_dir))
  step = int(checkpoint_path.rsplit("-", 1)[1])
  assert step > 0
  assert ("INTERRUPTED: training stopped by a signal to another worker; the latest checkpoint "
          "is %s" % checkpoint_path) in chief_log
  assert "INTERRUPTED: training stopped by SIGINT;" in worker_log
  codes, outputs = run_workers(step + 1)
  assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  assert _checkpoint_steps(str(model_dir))[-1] == step + 1
