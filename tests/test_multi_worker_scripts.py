"""The scripts on two loopback workers as docs/distributed.md says to run them: one shared
--output_dir, a dead or stopped worker, a restart.

Each test starts the workers as a user would (subprocesses, real flags, TF_CONFIG) with the
fixture's tiny model and data; the chief's checkpoint is then used by an ordinary one-process run.
"""

import json
import os
import re
import signal
import socket
import subprocess

import pytest
import tensorflow.compat.v1 as tf

import support
import training_guard

TIMEOUT_SECONDS = 240

# A worker whose peer died stops within about a second (gRPC sees the closed connection); this
# bounds that plus the ending of the process on a busy machine.
LOST_PEER_SECONDS = 60

MODEL_FLAGS = [
    "--bert_config_file=" + support.fixture_path("modeling", "bert_config.json"),
    "--vocab_file=" + support.VOCAB_FILE,
]

CLASSIFIER_FLAGS = MODEL_FLAGS + [
    "--task_name=MRPC",
    "--data_dir=" + support.fixture_path("classifier", "data"),
    "--max_seq_length=32",
    "--train_batch_size=10",
]
CLASSIFIER_TRAIN_EXAMPLES = 300


def _classifier_epochs(num_train_steps):
  """The --num_train_epochs of run_classifier.py that make num_train_steps training steps."""
  # The script takes int(examples / batch * epochs): half a step more is safe from rounding.
  return "--num_train_epochs=%r" % ((num_train_steps + 0.5) * 10 / CLASSIFIER_TRAIN_EXAMPLES)


def _start_workers(script, args, log_dir, pipe_worker_1=False):
  """Starts `script args` on two loopback workers; returns their Popen objects, worker 0 first.

  Output goes to log_dir/worker_<i>.log (a full pipe would stall a worker's all-reduce), or for
  worker 1, with pipe_worker_1, to a pipe the test reads line by line as it comes.
  """
  processes = []
  argv = support.script_command(script, args + ["--distribution_strategy=multi_worker_mirrored"])
  for index, tf_config in enumerate(support.loopback_tf_configs(2)):
    env = support.script_env({"TF_CONFIG": tf_config})
    if index == 1 and pipe_worker_1:
      processes.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    else:
      with open(os.path.join(str(log_dir), "worker_%d.log" % index), "w") as log:
        processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
  return processes


def _finish(processes, timeout=TIMEOUT_SECONDS):
  """Waits for every process (killing those still running after `timeout`); returns their codes."""
  try:
    for process in processes:
      if process.stdout is not None and not process.stdout.closed:
        process.communicate(timeout=timeout)
      process.wait(timeout=timeout)
  finally:
    for process in processes:
      if process.poll() is None:
        process.kill()
        process.wait()
  return [process.returncode for process in processes]


def _log(log_dir, index):
  with open(os.path.join(str(log_dir), "worker_%d.log" % index)) as reader:
    return reader.read()


def _run_workers(script, args, log_dir):
  """Runs `script args` on two workers to the end; fails the test unless both exit 0."""
  codes = _finish(_start_workers(script, args, log_dir))
  assert codes == [0, 0], _log(log_dir, 0)[-3000:] + _log(log_dir, 1)[-3000:]


def _wait_for_training(worker, steps_logged=1):
  """Reads the pipe of a worker until it has logged the loss `steps_logged` times."""
  for line in worker.stdout:
    if "loss = " in line:
      steps_logged -= 1
      if not steps_logged:
        return
  raise AssertionError("the worker ended before training")


def _latest_step(output_dir):
  """The global step of the latest checkpoint in output_dir, 0 if there is none."""
  checkpoint = tf.train.latest_checkpoint(str(output_dir))
  return int(tf.train.load_variable(checkpoint, "global_step")) if checkpoint else 0


def _assert_no_temporary_outputs(output_dir):
  assert not support.temporary_outputs(str(output_dir))


@pytest.mark.slow
def test_classifier_recipe_with_a_shared_output_dir(tmp_path):
  output_dir = tmp_path / "output"
  _run_workers("run_classifier", CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_train=true", _classifier_epochs(3)], tmp_path)
  assert _latest_step(output_dir) == 3
  assert os.path.isfile(output_dir / "train.tf_record")
  _assert_no_temporary_outputs(output_dir)

  result = support.run_script("run_classifier", CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_eval=true", "--distribution_strategy=none"])
  assert result.returncode == 0, result.stderr[-3000:]
  with open(output_dir / "eval_results.txt") as reader:
    assert "global_step = 3\n" in reader.read()


@pytest.mark.slow
def test_pretraining_recipe_with_a_shared_output_dir(tmp_path):
  output_dir = tmp_path / "output"
  flags = MODEL_FLAGS[:1] + [
      "--input_file=" + support.fixture_path("pretraining_data", "reference_wwm.tfrecord"),
      "--output_dir=%s" % output_dir, "--max_seq_length=64", "--max_predictions_per_seq=10",
      "--train_batch_size=4", "--eval_batch_size=4"]
  _run_workers("run_pretraining", flags + [
      "--do_train=true", "--num_train_steps=3", "--num_warmup_steps=1"], tmp_path)
  assert _latest_step(output_dir) == 3
  _assert_no_temporary_outputs(output_dir)

  result = support.run_script("run_pretraining", flags + [
      "--do_eval=true", "--max_eval_steps=2", "--distribution_strategy=none"])
  assert result.returncode == 0, result.stderr[-3000:]
  with open(output_dir / "eval_results.txt") as reader:
    assert "global_step = 3\n" in reader.read()


@pytest.mark.slow
def test_squad_recipe_with_a_shared_output_dir(tmp_path):
  output_dir = tmp_path / "output"
  flags = MODEL_FLAGS + ["--output_dir=%s" % output_dir, "--max_seq_length=96",
                         "--max_query_length=24", "--doc_stride=32"]
  # 174 questions / 16 * 0.3 epochs = 3 steps.
  _run_workers("run_squad", flags + [
      "--do_train=true", "--train_file=" + support.fixture_path("squad", "train-v1.1.json"),
      "--train_batch_size=16", "--num_train_epochs=0.3"], tmp_path)
  assert _latest_step(output_dir) == 3
  assert os.path.isfile(output_dir / "train.tf_record")
  _assert_no_temporary_outputs(output_dir)

  result = support.run_script("run_squad", flags + [
      "--do_predict=true", "--predict_file=" + support.fixture_path("squad", "dev-v1.1.json"),
      "--distribution_strategy=none"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.isfile(output_dir / "predictions.json")


def _endless_classifier_flags(output_dir):
  # The loss is logged every 10 steps, a checkpoint saved every 10: once worker 1 has logged
  # it twice (steps 0 and 10), the chief has saved the checkpoint of step 10.
  return CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_train=true", _classifier_epochs(10 ** 6),
      "--iterations_per_loop=10", "--save_checkpoints_steps=10"]


def _resume_to(output_dir, log_dir):
  """Relaunches both workers for 3 steps past the latest checkpoint; asserts they end there."""
  step = _latest_step(output_dir)
  assert step >= 10
  log_dir = log_dir / "resumed"  # Keeps the logs of the stopped run.
  log_dir.mkdir()
  _run_workers("run_classifier", CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_train=true", _classifier_epochs(step + 3),
      "--save_checkpoints_steps=10"], log_dir)
  assert _latest_step(output_dir) == step + 3
  _assert_no_temporary_outputs(output_dir)


def _assert_one_line_error(output, fragment):
  assert "Traceback" not in output, output[-3000:]
  last_line = output.strip().splitlines()[-1]
  assert last_line.startswith("ERROR: ") and fragment in last_line, output[-3000:]
  return last_line


@pytest.mark.slow
def test_a_killed_worker_stops_the_other_and_a_restart_resumes(tmp_path):
  output_dir = tmp_path / "output"
  chief, worker = _start_workers("run_classifier", _endless_classifier_flags(output_dir),
                                 tmp_path, pipe_worker_1=True)
  try:
    _wait_for_training(worker, steps_logged=2)
    worker.kill()
    codes = _finish([chief, worker], timeout=LOST_PEER_SECONDS)
  finally:
    _finish([chief, worker])
  assert codes == [1, -signal.SIGKILL]
  last_line = _assert_one_line_error(_log(tmp_path, 0), "stopped answering")
  assert re.fullmatch(
      r"ERROR: worker 1 \(127\.0\.0\.1:\d+\) stopped answering; stopping\. Restart all "
      r"workers with the same command to resume from step %d" % _latest_step(output_dir),
      last_line), last_line
  _resume_to(output_dir, tmp_path)


@pytest.mark.slow
def test_sigterm_to_a_worker_stops_both_and_a_restart_resumes(tmp_path):
  output_dir = tmp_path / "output"
  chief, worker = _start_workers("run_classifier", _endless_classifier_flags(output_dir),
                                 tmp_path, pipe_worker_1=True)
  try:
    _wait_for_training(worker, steps_logged=2)
    worker.send_signal(signal.SIGTERM)
    worker_output = worker.communicate(timeout=LOST_PEER_SECONDS)[0]
    codes = _finish([chief, worker], timeout=LOST_PEER_SECONDS)
  finally:
    _finish([chief, worker])
  assert codes == [128 + signal.SIGINT, 128 + signal.SIGTERM]
  _assert_one_line_error(_log(tmp_path, 0), "training stopped by a signal to another worker")
  _assert_one_line_error(worker_output, "training stopped by SIGTERM")
  _resume_to(output_dir, tmp_path)


def test_unreachable_peers_are_those_whose_port_is_closed():
  with socket.socket() as listening:
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    answering = "127.0.0.1:%d" % listening.getsockname()[1]
    closed = "127.0.0.1:%d" % support.free_port()
    tf_config = {"cluster": {"chief": [answering], "worker": [closed, closed]},
                 "task": {"type": "worker", "index": 0}}
    assert training_guard.unreachable_peers(json.dumps(tf_config)) == [
        "worker 1 (%s)" % closed]
  assert training_guard.unreachable_peers(None) == []
  assert training_guard.unreachable_peers("not JSON") == []
