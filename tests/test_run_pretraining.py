"""Tests of run_pretraining.py: eval parity with the original, training (in micro-batches, on
two mirrored devices), resuming, bad input."""

import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import modeling
import precision
import support
import tensorflow.compat.v1 as tf

# Every test here trains or starts TensorFlow processes.
pytestmark = pytest.mark.slow

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
MODEL_CHECKPOINT = support.fixture_path("modeling", "bert_model.ckpt")
REFERENCE_RECORDS = support.fixture_path("pretraining_data", "reference.tfrecord")
SAMPLE_TEXT = os.path.join(support.REPO_DIR, "sample_text.txt")

# A model small enough to train for a few dozen steps in seconds.
TINY_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 32,
    "initializer_range": 0.02,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
TINY_SEQ_LENGTH = 64
TINY_PREDICTIONS = 10

# Short training on the fixture records; the fixture checkpoint was made with these lengths.
FIXTURE_TRAIN_FLAGS = [
    "--bert_config_file=" + MODEL_CONFIG,
    "--input_file=" + REFERENCE_RECORDS,
    "--do_train=true",
    "--train_batch_size=8",
    "--learning_rate=1e-4",
    "--num_warmup_steps=0",
    "--save_checkpoints_steps=2",
    "--iterations_per_loop=2",
]


def run_pretraining(args):
  """Runs run_pretraining.py and fails the test, showing its output, if it fails."""
  result = support.run_script("run_pretraining", args)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def read_eval_results(output_dir):
  """Returns eval_results.txt of `output_dir` as a dict of name -> float."""
  return read_eval_results_file(os.path.join(output_dir, "eval_results.txt"))


def read_eval_results_file(path):
  """Returns the `name = value` lines of an eval results file as a dict of name -> float."""
  results = {}
  with open(path) as reader:
    for line in reader:
      name, value = line.split(" = ")
      results[name] = float(value)
  return results


def latest_global_step(output_dir):
  return tf.train.load_variable(output_dir, "global_step")


def expect_input_error(args, *fragments):
  """Runs run_pretraining.py expecting exit status 1 and a one-line error with `fragments`."""
  result = support.run_script("run_pretraining", args)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("ERROR: "), last_line
  for fragment in fragments:
    assert fragment in last_line
  return last_line


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  """Writes the tiny config and pre-training records made from sample_text.txt."""
  data_dir = tmp_path_factory.mktemp("tiny_model")
  config_file = str(data_dir / "bert_config.json")
  with open(config_file, "w") as writer:
    json.dump(TINY_CONFIG, writer)
  records = str(data_dir / "sample.tfrecord")
  result = support.run_script("create_pretraining_data", [
      "--input_file=" + SAMPLE_TEXT,
      "--output_file=" + records,
      "--vocab_file=" + support.VOCAB_FILE,
      "--do_lower_case=true",
      "--max_seq_length=%d" % TINY_SEQ_LENGTH,
      "--max_predictions_per_seq=%d" % TINY_PREDICTIONS,
      "--masked_lm_prob=0.15",
      "--random_seed=12345",
      "--dupe_factor=1",
  ])
  assert result.returncode == 0, result.stderr[-3000:]
  return config_file, records


def tiny_model_flags(tiny_model, output_dir):
  config_file, records = tiny_model
  return [
      "--bert_config_file=" + config_file,
      "--input_file=" + records,
      "--output_dir=" + output_dir,
      "--max_seq_length=%d" % TINY_SEQ_LENGTH,
      "--max_predictions_per_seq=%d" % TINY_PREDICTIONS,
      "--eval_batch_size=16",
      "--max_eval_steps=4",
  ]


def fixture_eval_flags(output_dir, max_eval_steps=5):
  """Flags that evaluate the fixture checkpoint on the fixture's reference TFRecords."""
  return [
      "--bert_config_file=" + MODEL_CONFIG,
      "--init_checkpoint=" + MODEL_CHECKPOINT,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + output_dir,
      "--do_eval=true",
      "--eval_batch_size=8",
      "--max_seq_length=128",
      "--max_predictions_per_seq=20",
      "--max_eval_steps=%d" % max_eval_steps,
  ]


def assert_eval_results_match_reference(output_dir):
  results = read_eval_results(output_dir)
  expected = read_eval_results_file(
      support.fixture_path("pretraining_data", "reference_eval_results.txt"))
  assert sorted(results) == sorted(expected)
  for name in expected:
    assert results[name] == pytest.approx(expected[name], abs=1e-4), name


def test_bfloat16_evaluation_stays_close_to_the_original(tmp_path):
  """bfloat16 products, the last layer at the masked positions only: the reference's metrics."""
  run_pretraining(fixture_eval_flags(str(tmp_path)) + ["--precision=bf16"])
  results = read_eval_results(str(tmp_path))
  expected = read_eval_results_file(
      support.fixture_path("pretraining_data", "reference_eval_results.txt"))
  assert sorted(results) == sorted(expected)
  for name in ("loss", "masked_lm_loss", "next_sentence_loss"):
    assert results[name] == pytest.approx(expected[name], rel=2e-3), name
  # 40 sequences, 5 batches: one masked token of the 800 or so may change its argmax.
  assert results["masked_lm_accuracy"] == pytest.approx(expected["masked_lm_accuracy"], abs=0.005)
  assert results["next_sentence_accuracy"] == pytest.approx(expected["next_sentence_accuracy"],
                                                            abs=0.03)


def test_eval_matches_reference(tmp_path):
  run_pretraining(fixture_eval_flags(str(tmp_path)))
  assert sorted(read_eval_results(str(tmp_path))) == [
      "global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
      "next_sentence_accuracy", "next_sentence_loss"
  ]
  assert_eval_results_match_reference(str(tmp_path))


def test_heads_on_the_fixture_checkpoint_match_the_reference_in_a_session():
  """The eval parity of the heads alone, in a plain session: no Estimator on any TensorFlow.

  Restoring every variable the graph makes from the original's checkpoint also proves that the
  heads keep its variable names and shapes.
  """
  run_pretraining_module = support.load_script("run_pretraining")
  config = modeling.BertConfig.from_json_file(MODEL_CONFIG)
  num_batches = 5
  with tf.Graph().as_default():
    input_fn = run_pretraining_module.input_fn_builder(
        [REFERENCE_RECORDS], 128, 20, is_training=False)
    features = tf.data.make_one_shot_iterator(input_fn({"batch_size": 8})).get_next()
    model = modeling.BertModel(config, False, features["input_ids"], features["input_mask"],
                               features["segment_ids"])
    masked_lm_loss, masked_lm_example_loss, masked_lm_log_probs = (
        run_pretraining_module.get_masked_lm_output(
            config, model.get_sequence_output(), model.get_embedding_table(),
            features["masked_lm_positions"], features["masked_lm_ids"],
            features["masked_lm_weights"]))
    next_sentence_loss, next_sentence_example_loss, next_sentence_log_probs = (
        run_pretraining_module.get_next_sentence_output(
            config, model.get_pooled_output(), features["next_sentence_labels"]))
    metrics = run_pretraining_module.metric_fn(
        masked_lm_example_loss, masked_lm_log_probs, features["masked_lm_ids"],
        features["masked_lm_weights"], next_sentence_example_loss, next_sentence_log_probs,
        features["next_sentence_labels"])
    metrics["loss"] = tf.metrics.mean(masked_lm_loss + next_sentence_loss)
    saver = tf.train.Saver()
    with tf.Session() as session:
      saver.restore(session, MODEL_CHECKPOINT)
      session.run(tf.local_variables_initializer())
      for _ in range(num_batches):
        session.run([update for _, update in metrics.values()])
      results = session.run({name: value for name, (value, _) in metrics.items()})
  expected = read_eval_results_file(
      support.fixture_path("pretraining_data", "reference_eval_results.txt"))
  del expected["global_step"]
  assert sorted(results) == sorted(expected)
  for name in expected:
    assert results[name] == pytest.approx(expected[name], abs=1e-4), name


def test_use_xla_compiles_on_cpu_with_the_users_tf_xla_flags_and_keeps_the_results(tmp_path):
  """TF_XLA_FLAGS of the user's own: evaluation compiles, even on CPU, and gives the results."""
  result = support.run_script(
      "run_pretraining", fixture_eval_flags(str(tmp_path)) + ["--use_xla=true"],
      env_overrides=dict(TF_CPP_MIN_LOG_LEVEL="0", TF_XLA_FLAGS=precision.CPU_XLA_FLAGS))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Compiled cluster using XLA" in result.stderr
  assert_eval_results_match_reference(str(tmp_path))


@pytest.mark.parametrize("tf_xla_flags", ["", "--tf_xla_min_cluster_size=4"])
def test_use_xla_on_cpu_runs_without_xla_and_says_so(tiny_model, tmp_path, tf_xla_flags):
  """Unless the user's TF_XLA_FLAGS make XLA compile on CPU, where it is slower."""
  result = support.run_script(
      "run_pretraining", tiny_model_flags(tiny_model, str(tmp_path)) + [
          "--do_train=true", "--do_eval=true", "--num_train_steps=2", "--max_eval_steps=1",
          "--use_xla=true"],
      env_overrides=dict(TF_CPP_MIN_LOG_LEVEL="0", TF_XLA_FLAGS=tf_xla_flags))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Compiled cluster using XLA" not in result.stderr
  assert ("--use_xla: running without XLA: on a machine without GPU it is slower than "
          "TensorFlow's own kernels. To compile anyway, start the script with "
          "TF_XLA_FLAGS=\"%s\"" % precision.CPU_XLA_FLAGS) in result.stderr


def test_train_and_eval_lowers_loss(tiny_model, tmp_path):
  untrained_dir = str(tmp_path / "untrained")
  run_pretraining(tiny_model_flags(tiny_model, untrained_dir) + ["--do_eval=true"])
  before = read_eval_results(untrained_dir)

  trained_dir = str(tmp_path / "trained")
  run_pretraining(tiny_model_flags(tiny_model, trained_dir) + [
      "--do_train=true",
      "--do_eval=true",
      "--train_batch_size=16",
      "--learning_rate=2e-3",
      "--num_train_steps=40",
      "--num_warmup_steps=4",
      "--save_checkpoints_steps=40",
      "--iterations_per_loop=40",
  ])
  after = read_eval_results(trained_dir)

  assert before["global_step"] == 0
  assert after["global_step"] == 40
  assert after["masked_lm_loss"] < before["masked_lm_loss"] - 1.0, (before, after)
  assert after["loss"] < before["loss"] - 1.0, (before, after)
  assert latest_global_step(trained_dir) == 40


def test_training_resumes_from_latest_checkpoint(tmp_path):
  output_dir = str(tmp_path)
  train_flags = FIXTURE_TRAIN_FLAGS + [
      "--output_dir=" + output_dir, "--init_checkpoint=" + MODEL_CHECKPOINT]
  run_pretraining(train_flags + ["--num_train_steps=4"])
  assert latest_global_step(output_dir) == 4

  # A run killed between steps 2 and 4 leaves model.ckpt-2 as the latest checkpoint; running
  # the same command again continues from there instead of starting over.
  for name in tf.io.gfile.glob(os.path.join(output_dir, "model.ckpt-4.*")):
    tf.io.gfile.remove(name)
  checkpoint_2 = os.path.join(output_dir, "model.ckpt-2")
  tf.train.update_checkpoint_state(output_dir, checkpoint_2)
  result = run_pretraining(train_flags + ["--num_train_steps=4"])
  assert "Restoring parameters from %s\n" % checkpoint_2 in result.stderr
  assert "Saving checkpoints for 0 into" not in result.stderr
  assert latest_global_step(output_dir) == 4
  weights_at_4 = tf.train.load_variable(output_dir, "cls/predictions/transform/dense/kernel")

  # More steps on a finished run continue from its last checkpoint, not from init_checkpoint.
  result = run_pretraining(train_flags + [
      "--num_train_steps=6", "--do_eval=true", "--max_eval_steps=1"])
  checkpoint_4 = os.path.join(output_dir, "model.ckpt-4")
  assert "Restoring parameters from %s\n" % checkpoint_4 in result.stderr
  assert latest_global_step(output_dir) == 6
  assert read_eval_results(output_dir)["global_step"] == 6
  weights_at_6 = tf.train.load_variable(output_dir, "cls/predictions/transform/dense/kernel")
  assert not np.array_equal(weights_at_4, weights_at_6)


def test_gather_indexes_picks_positions_of_each_sequence():
  run_pretraining_module = support.load_script("run_pretraining")
  sequences = np.arange(2 * 5 * 3, dtype=np.float32).reshape([2, 5, 3])
  positions = np.array([[4, 0], [1, 1]], dtype=np.int32)
  with tf.Graph().as_default(), tf.Session() as session:
    gathered = session.run(
        run_pretraining_module.gather_indexes(tf.constant(sequences), tf.constant(positions)))
  np.testing.assert_array_equal(
      gathered, [sequences[0, 4], sequences[0, 0], sequences[1, 1], sequences[1, 1]])


def test_wrong_max_seq_length_is_one_line_error(tmp_path):
  expect_input_error([
      "--bert_config_file=" + MODEL_CONFIG,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + str(tmp_path),
      "--do_eval=true",
      "--max_seq_length=64",
  ], REFERENCE_RECORDS, "input_ids", "length 128", "--max_seq_length=64")


def test_wrong_max_predictions_per_seq_is_one_line_error(tmp_path):
  expect_input_error([
      "--bert_config_file=" + MODEL_CONFIG,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + str(tmp_path),
      "--do_train=true",
      "--max_predictions_per_seq=10",
  ], REFERENCE_RECORDS, "masked_lm_positions", "length 20", "--max_predictions_per_seq=10")


def test_input_file_matching_nothing_is_one_line_error(tmp_path):
  missing = str(tmp_path / "no_such_*.tfrecord")
  expect_input_error([
      "--bert_config_file=" + MODEL_CONFIG,
      "--input_file=%s,%s" % (REFERENCE_RECORDS, missing),
      "--output_dir=" + str(tmp_path / "out"),
      "--do_eval=true",
  ], "--input_file", missing)


def test_neither_train_nor_eval_is_one_line_error(tmp_path):
  expect_input_error([
      "--bert_config_file=" + MODEL_CONFIG,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + str(tmp_path),
  ], "--do_train", "--do_eval")


def test_sequence_longer_than_model_is_one_line_error(tmp_path):
  config_file = str(tmp_path / "bert_config.json")
  with open(config_file, "w") as writer:
    json.dump(TINY_CONFIG, writer)
  expect_input_error([
      "--bert_config_file=" + config_file,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + str(tmp_path / "out"),
      "--do_eval=true",
  ], "--max_seq_length=128", "max_position_embeddings=64")


def test_no_training_steps_is_one_line_error(tmp_path):
  expect_input_error([
      "--bert_config_file=" + MODEL_CONFIG,
      "--input_file=" + REFERENCE_RECORDS,
      "--output_dir=" + str(tmp_path),
      "--do_train=true",
      "--num_train_steps=0",
  ], "--num_train_steps=0")


def test_gradient_accumulation_counts_updates(tiny_model, tmp_path):
  output_dir = str(tmp_path)
  result = run_pretraining(tiny_model_flags(tiny_model, output_dir) + [
      "--do_train=true",
      "--train_batch_size=16",
      "--gradient_accumulation_steps=2",
      "--num_train_steps=3",
      "--num_warmup_steps=0",
      "--save_checkpoints_steps=3",
  ])
  # Batches of 16 are fed as micro-batches of 8; every other run of the train op updates, and
  # training stops after 3 updates, not 3 runs.
  assert "name = input_ids, shape = (8, None)" in result.stderr
  assert tf.train.latest_checkpoint(output_dir).endswith("model.ckpt-3")
  assert latest_global_step(output_dir) == 3


# Gives the process two logical CPUs, as two GPUs would be two devices, then runs the script
# named by the first argument with the others as its command line.
ON_TWO_CPUS = """
import runpy, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_mirrored_trains_on_two_devices_and_evaluates_on_one(tiny_model, tmp_path):
  output_dir = str(tmp_path)
  args = tiny_model_flags(tiny_model, output_dir) + [
      "--do_train=true",
      "--do_eval=true",
      "--train_batch_size=16",
      "--gradient_accumulation_steps=2",
      "--num_train_steps=3",
      "--num_warmup_steps=0",
      "--save_checkpoints_steps=3",
      "--distribution_strategy=mirrored",
  ]
  env = dict(os.environ, PYTHONPATH=support.REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2",
             CUDA_VISIBLE_DEVICES="")
  result = subprocess.run(
      [sys.executable, "-c", ON_TWO_CPUS, os.path.join(support.REPO_DIR, "run_pretraining.py")] +
      args, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]

  assert ("Using MirroredStrategy with devices ('/job:localhost/replica:0/task:0/device:CPU:0', "
          "'/job:localhost/replica:0/task:0/device:CPU:1')") in result.stderr
  # Each of the two replicas builds the model on its half of a micro-batch: 16 / 2 / 2.
  assert result.stderr.count("name = input_ids, shape = (4, None)") == 2
  assert latest_global_step(output_dir) == 3
  # Evaluation runs on one device, in whole eval batches.
  assert "name = input_ids, shape = (16, None)" in result.stderr
  assert read_eval_results(output_dir)["global_step"] == 3


# Each bad input run as a user would, all at once since most of each run is TensorFlow's start.
COMMAND_LINE_ERRORS = {
    # name: (flags, "{tmp}" standing for the test's folder; the error line)
    "batch_not_divisible_into_micro_batches": (
        ["--do_train=true", "--train_batch_size=8", "--gradient_accumulation_steps=3"],
        "--train_batch_size=8 cannot be split into --gradient_accumulation_steps=3 "
        "micro-batches of equal size: choose a divisor"),
    "multi_worker_asked_to_evaluate": (
        ["--do_train=true", "--do_eval=true", "--distribution_strategy=multi_worker_mirrored"],
        "--distribution_strategy=multi_worker_mirrored only trains: leave out --do_eval, and "
        "evaluate, predict or export afterwards in a run with --distribution_strategy=none on "
        "the same --output_dir"),
    "mistyped_init_checkpoint": (
        ["--do_eval=true", "--init_checkpoint={tmp}/bert_modle.ckpt"],
        "--init_checkpoint: no checkpoint at {tmp}/bert_modle.ckpt"),
    "input_file_not_a_tfrecord_file": (
        ["--do_train=true", "--input_file=" + SAMPLE_TEXT],
        "%s is not a TFRecord file of tf.train.Example records" % SAMPLE_TEXT),
    "empty_input_file": (
        ["--do_train=true", "--input_file={tmp}/empty.tfrecord"],
        "--input_file: {tmp}/empty.tfrecord holds no records"),
}


@pytest.fixture(scope="module")
def command_line_errors(tmp_path_factory):
  """Runs the script once per entry of COMMAND_LINE_ERRORS; returns (result, output_dir)."""
  folder = str(tmp_path_factory.mktemp("bad_input"))
  with open(os.path.join(folder, "empty.tfrecord"), "wb"):
    pass

  def run(name):
    output_dir = os.path.join(folder, name)
    args = ["--bert_config_file=" + MODEL_CONFIG, "--input_file=" + REFERENCE_RECORDS,
            "--output_dir=" + output_dir]
    args += [arg.format(tmp=folder) for arg in COMMAND_LINE_ERRORS[name][0]]
    return support.run_script("run_pretraining", args), output_dir

  with concurrent.futures.ThreadPoolExecutor(len(COMMAND_LINE_ERRORS)) as pool:
    return folder, dict(zip(COMMAND_LINE_ERRORS, pool.map(run, COMMAND_LINE_ERRORS)))


@pytest.mark.parametrize("name", sorted(COMMAND_LINE_ERRORS))
def test_bad_input_is_one_error_line_before_any_output(command_line_errors, name):
  folder, results = command_line_errors
  result, output_dir = results[name]
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  expected = "ERROR: " + COMMAND_LINE_ERRORS[name][1].format(tmp=folder)
  assert result.stderr.strip().splitlines()[-1] == expected
  assert not os.path.exists(output_dir)
