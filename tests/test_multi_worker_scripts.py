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
import threading

import pytest
import tensorflow.compat.v1 as tf

import script_io
import support
import training_guard

TIMEOUT_SECONDS = 240

# A worker whose peer died stops within about a second (gRPC sees the closed connection); this
# bounds that plus the ending of the process on a busy machine.
LOST_PEER_SECONDS = 60

# The --peer_timeout_seconds of the tests that stop a worker or restart: a worker that has not
# answered for this long is lost. Training from start to end with it shows that busy workers
# (converting their input, starting, saving) still answer.
PEER_TIMEOUT_SECONDS = 10

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


def _start_workers(script, args, log_dir, piped_index=None):
  """Starts `script args` on two loopback workers; returns their Popen objects, worker 0 first.

  Output goes to log_dir/worker_<i>.log (a full pipe would stall a worker's all-reduce), or for
  worker piped_index to a pipe the test reads line by line as it comes.
  """
  processes = []
  argv = support.script_command(script, args + ["--distribution_strategy=multi_worker_mirrored"])
  for index, tf_config in enumerate(support.loopback_tf_configs(2)):
    env = support.script_env({"TF_CONFIG": tf_config})
    if index == piped_index:
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
    support.kill_running(processes)
  return [process.returncode for process in processes]


def _log(log_dir, index):
  with open(os.path.join(str(log_dir), "worker_%d.log" % index)) as reader:
    return reader.read()


def _run_workers(script, args, log_dir):
  """Runs `script args` on two workers to the end; fails the test unless both exit 0."""
  codes = _finish(_start_workers(script, args, log_dir))
  assert codes == [0, 0], _log(log_dir, 0)[-3000:] + _log(log_dir, 1)[-3000:]


def _run_alone(script, args):
  """Runs `script args` in one ordinary process, as after a multi-worker run; it must exit 0."""
  result = support.run_script(script, args + ["--distribution_strategy=none"])
  assert result.returncode == 0, result.stderr[-3000:]


def _wait_for_training(worker, steps_logged=1):
  """Reads the pipe of a worker until it has logged the loss `steps_logged` times."""
  for line in worker.stdout:
    if "loss = " in line:
      steps_logged -= 1
      if not steps_logged:
        return
  raise AssertionError("the worker ended before training")


def _wait_for_checkpoint(worker, output_dir, step):
  """Reads the pipe of a worker until output_dir has a checkpoint of `step` or later."""
  for _ in worker.stdout:
    if _latest_step(output_dir) >= step:
      return
  raise AssertionError("the worker ended before the checkpoint of step %d" % step)


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

  _run_alone("run_classifier", CLASSIFIER_FLAGS + ["--output_dir=%s" % output_dir,
                                                    "--do_eval=true"])
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

  _run_alone("run_pretraining", flags + ["--do_eval=true", "--max_eval_steps=2"])
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

  _run_alone("run_squad", flags + [
      "--do_predict=true", "--predict_file=" + support.fixture_path("squad", "dev-v1.1.json")])
  assert os.path.isfile(output_dir / "predictions.json")


def _endless_classifier_flags(output_dir):
  # The loss is logged every 10 steps, a checkpoint saved every 10: once worker 1 has logged
  # it twice (steps 0 and 10), the chief has saved the checkpoint of step 10.
  return CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_train=true", _classifier_epochs(10 ** 6),
      "--iterations_per_loop=10", "--save_checkpoints_steps=10",
      "--peer_timeout_seconds=%d" % PEER_TIMEOUT_SECONDS]


def _resume_to(output_dir, log_dir):
  """Relaunches both workers for 3 steps past the latest checkpoint; asserts they end there."""
  step = _latest_step(output_dir)
  assert step >= 10
  log_dir = log_dir / "resumed"  # Keeps the logs of the stopped run.
  log_dir.mkdir()
  _run_workers("run_classifier", CLASSIFIER_FLAGS + [
      "--output_dir=%s" % output_dir, "--do_train=true", _classifier_epochs(step + 3),
      "--save_checkpoints_steps=10", "--peer_timeout_seconds=%d" % PEER_TIMEOUT_SECONDS],
               log_dir)
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
                                 tmp_path, piped_index=1)
  try:
    _wait_for_training(worker, steps_logged=2)
    worker.kill()
    codes = _finish([chief, worker], timeout=LOST_PEER_SECONDS)
  finally:
    _finish([chief, worker])
  assert codes == [1, -signal.SIGKILL]
  _assert_names_the_lost_worker(_log(tmp_path, 0), 1, output_dir)
  _resume_to(output_dir, tmp_path)


def _assert_names_the_lost_worker(output, index, output_dir):
  last_line = _assert_one_line_error(output, "stopped answering")
  assert re.fullmatch(
      r"ERROR: worker %d \(127\.0\.0\.1:\d+\) stopped answering; stopping\. Restart all "
      r"workers with the same command to resume from step %d" % (index,
                                                                  _latest_step(output_dir)),
      last_line), last_line


@pytest.mark.slow
@pytest.mark.parametrize("stopped_index", [0, 1])
def test_a_stopped_worker_stops_the_other_and_a_restart_resumes(tmp_path, stopped_index):
  # A frozen process (here SIGSTOP; or a machine whose network drops) keeps its port open:
  # the other worker waits inside TensorFlow until --peer_timeout_seconds have passed.
  output_dir = tmp_path / "output"
  survivor_index = 1 - stopped_index
  workers = _start_workers("run_classifier", _endless_classifier_flags(output_dir), tmp_path,
                           piped_index=survivor_index)
  stopped, survivor = workers[stopped_index], workers[survivor_index]
  try:
    _wait_for_checkpoint(survivor, output_dir, 10)
    stopped.send_signal(signal.SIGSTOP)
    output = survivor.communicate(timeout=LOST_PEER_SECONDS + PEER_TIMEOUT_SECONDS)[0]
  finally:
    stopped.kill()
    _finish(workers)
  assert survivor.returncode == 1, output[-3000:]
  _assert_names_the_lost_worker(output, stopped_index, output_dir)
  _resume_to(output_dir, tmp_path)


@pytest.mark.slow
def test_sigterm_to_a_worker_stops_both_and_a_restart_resumes(tmp_path):
  output_dir = tmp_path / "output"
  chief, worker = _start_workers("run_classifier", _endless_classifier_flags(output_dir),
                                 tmp_path, piped_index=1)
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


def _task(index, address="127.0.0.1:1"):
  return training_guard._Task("worker", index, address)  # pylint: disable=protected-access


def test_a_peer_is_lost_once_it_has_not_answered_for_the_timeout():
  now = [100.0]
  answering = {1: True, 2: True}
  watch = training_guard.PeerWatch(
      [_task(1), _task(2)], 30, on_lost=None,
      probe=lambda task, unused_timeout: answering[task.index], clock=lambda: now[0])
  answering[2] = False
  now[0] = 129.0
  assert watch.check() == []
  now[0] = 130.0
  assert watch.check() == ["worker 2 (127.0.0.1:1)"]
  answering[2] = True  # An answer, however late, counts from then on.
  assert watch.check() == []
  answering[1] = answering[2] = False
  now[0] = 160.0
  assert watch.check() == ["worker 1 (127.0.0.1:1)", "worker 2 (127.0.0.1:1)"]


def test_the_watch_calls_on_lost_once_from_its_thread():
  lost = []
  called = threading.Event()

  def on_lost(names):
    lost.append(names)
    called.set()

  watch = training_guard.PeerWatch([_task(1)], 0.3, on_lost,
                                   probe=lambda unused_task, unused_timeout: False)
  watch.begin()
  assert called.wait(timeout=60)
  watch.stop()
  assert lost == [["worker 1 (127.0.0.1:1)"]]


def test_the_lost_peers_are_those_closed_else_those_the_error_names_else_all():
  with socket.socket() as first, socket.socket() as second:
    for listening in first, second:
      listening.bind(("127.0.0.1", 0))
      listening.listen()
    answering = ["127.0.0.1:%d" % sock.getsockname()[1] for sock in (first, second)]
    closed = "127.0.0.1:%d" % support.free_port()

    def tf_config(workers):
      return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": 0}})

    # The stuck RPC and the coordination service name the peer so; task 0 is this worker.
    frozen = ("From /job:worker/replica:0/task:0:\nkeepalive watchdog timeout\nAdditional GRPC "
              "error information from remote target /job:worker/replica:0/task:2 while calling "
              "/tensorflow.WorkerService/RecvBuf")
    heartbeat = "Error reported from /job:worker/task:1: Task heartbeat timeout"
    three = tf_config(["127.0.0.1:1"] + answering)
    assert training_guard.describe_lost_peers(three, frozen) == "worker 2 (%s)" % answering[1]
    assert training_guard.describe_lost_peers(three, heartbeat) == "worker 1 (%s)" % answering[0]
    assert training_guard.describe_lost_peers(
        tf_config(["127.0.0.1:1", answering[0], closed]), frozen) == "worker 2 (%s)" % closed
    assert training_guard.describe_lost_peers(
        tf_config(["127.0.0.1:1", closed, answering[1]]), frozen) == "worker 1 (%s)" % closed
    assert training_guard.describe_lost_peers(three, "From /job:worker/replica:0/task:0:") == (
        "worker 1 (%s) or worker 2 (%s)" % tuple(answering))


def test_an_unavailable_peer_outside_training_is_one_line_with_its_reason():
  error = tf.errors.UnavailableError(None, None, (
      "From /job:worker/replica:0/task:0:\nConnection reset by peer\nAdditional GRPC error "
      "information from remote target /job:worker/replica:0/task:1"))
  assert script_io.error_line(error) == (
      "another worker of the cluster stopped answering (Connection reset by peer): restart "
      "every worker with the same command to resume from the latest checkpoint")
