"""How a training run guards itself: `train` wraps a runner's or estimator's train().

A NaN loss names its step (`NanLossError`); a run that fails before it trains past the step it
started from leaves no checkpoint behind for a corrected re-run to resume from
(`discarding_checkpoints_without_progress`); a worker of a cluster that stops answering is
named, with the step all workers resume from (`unreachable_peers`).
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import contextlib
import json
import os
import re
import socket

import numpy as np
import script_io
import tensorflow.compat.v1 as tf


class NanLossError(tf.train.NanLossDuringTrainingError):
  """The training loss became NaN.

  Attributes:
    step: the global step of the training step whose loss is NaN (the value it logs).
  """

  def __init__(self, step):
    super(NanLossError, self).__init__()
    self.step = step

  def __str__(self):
    return "NaN loss at step %d" % self.step


def train(estimator, input_fn, max_steps):
  """Trains as `estimator.train(input_fn=input_fn, max_steps=max_steps)`, with two safeguards.

  A NaN loss raises `NanLossError`, which names the step (the estimator's own check does not).
  A run that fails or is interrupted before it trains past the step it started from leaves no
  checkpoint behind (`discarding_checkpoints_without_progress`): a corrected re-run into the
  same --output_dir would resume from it, with the failed run's weights or model.

  Args:
    estimator: what `make_estimator` returns; its model_dir is the --output_dir.
    input_fn, max_steps: as `estimator.train` takes them.
  """
  try:
    with discarding_checkpoints_without_progress(estimator.model_dir):
      estimator.train(input_fn=input_fn, max_steps=max_steps, hooks=[_NanLossStepHook()])
  except tf.errors.UnavailableError as error:
    lost = unreachable_peers(os.environ.get("TF_CONFIG"))
    if not lost:
      raise  # script_io.error_line says that some worker stopped answering.
    latest = tf.train.latest_checkpoint(estimator.model_dir)
    raise script_io.WorkerLostError(
        "%s stopped answering; stopping. Restart all workers with the same command to resume "
        "from %s" % (" and ".join(lost), "step %d" % _checkpoint_step(latest) if latest
                     else "the start (no checkpoint was saved)")) from error


# How long a peer's address may take to accept a TCP connection before it counts as lost.
PEER_CONNECT_SECONDS = 2


def unreachable_peers(tf_config_text):
  """The other tasks of a TF_CONFIG cluster whose address no longer accepts a TCP connection.

  After a worker fails with UnavailableError, this tells which peer is gone: a process that
  died leaves its port closed (refused at once), a machine that died does not answer (the
  connection times out).

  Args:
    tf_config_text: the TF_CONFIG environment variable (JSON), or None.

  Returns:
    List of "TYPE INDEX (HOST:PORT)" strings, e.g. ["worker 1 (127.0.0.1:2223)"], in the
    cluster's order; empty without a cluster or when every peer answers.
  """
  try:
    tf_config = json.loads(tf_config_text or "{}")
  except ValueError:
    return []
  task = tf_config.get("task") or {}
  lost = []
  for task_type, addresses in sorted((tf_config.get("cluster") or {}).items()):
    for index, address in enumerate(addresses):
      if (task_type, index) == (task.get("type"), task.get("index")):
        continue
      host, _, port = address.rpartition(":")
      try:
        socket.create_connection((host, int(port)), timeout=PEER_CONNECT_SECONDS).close()
      except (OSError, ValueError):
        lost.append("%s %d (%s)" % (task_type, index, address))
  return lost


class _NanLossStepHook(tf.train.SessionRunHook):
  """Raises `NanLossError` with the step when a loss of the LOSSES collection is NaN.

  The Estimator puts its loss in that collection, and runs the hooks given to `train` before
  its own NaN check, which raises the same error without a step.
  """

  def begin(self):
    self._losses = tf.get_collection(tf.GraphKeys.LOSSES)
    self._global_step = tf.train.get_global_step()

  def before_run(self, run_context):
    if not self._losses or self._global_step is None:
      return None
    return tf.train.SessionRunArgs((self._losses, self._global_step))

  def after_run(self, run_context, run_values):
    if run_values.results is None:
      return
    losses, step = run_values.results
    if np.isnan(losses).any():
      raise NanLossError(int(step))


# The step of a checkpoint named by the Saver's global_step argument ("model.ckpt-1200").
_CHECKPOINT_STEP = re.compile(r"-(\d+)$")


@contextlib.contextmanager
def discarding_checkpoints_without_progress(model_dir):
  """On failure in the block, removes the checkpoints it wrote unless one is of a later step.

  Training saves a checkpoint before its first step (Estimator's model.ckpt-0, or that of the
  step it resumes from). If the run then fails (a bad flag, bad data, Ctrl-C) without saving
  one of a later step, those checkpoints hold nothing but the starting weights, and a corrected
  re-run into the same folder would resume from them: from the failed run's weights, or from a
  model of another shape. So they are removed, and the folder's "checkpoint" file is put back
  as it was. Checkpoints of a later step are kept, as are the others' files (events, graph).
  This looks at the files only, so it works whatever trains.

  Args:
    model_dir: the folder training writes its checkpoints to, or None (nothing is done).
  """
  if not model_dir:
    yield
    return
  state_file = os.path.join(model_dir, "checkpoint")
  old_state = _read_bytes(state_file)
  old_prefixes = _checkpoint_prefixes(model_dir)
  latest = tf.train.latest_checkpoint(model_dir)
  start_step = (_checkpoint_step(latest) if latest else None) or 0
  try:
    yield
  except BaseException:
    new_prefixes = _checkpoint_prefixes(model_dir) - old_prefixes
    new_steps = [_checkpoint_step(prefix) for prefix in new_prefixes]
    if new_prefixes and all(step is not None and step <= start_step for step in new_steps):
      for prefix in new_prefixes:
        for path in tf.io.gfile.glob(prefix + ".*"):
          tf.io.gfile.remove(path)
      if old_state is None:
        if tf.io.gfile.exists(state_file):
          tf.io.gfile.remove(state_file)
      else:
        with tf.io.gfile.GFile(state_file, "wb") as writer:
          writer.write(old_state)
      tf.logging.info("Removed the checkpoints of this failed run, which hold only the weights "
                      "it started from: %s", ", ".join(sorted(new_prefixes)))
    raise


def _checkpoint_prefixes(model_dir):
  """The set of checkpoint paths (prefixes of their files) in `model_dir`."""
  pattern = os.path.join(model_dir, "*.index")
  return {path[:-len(".index")] for path in tf.io.gfile.glob(pattern)}


def _checkpoint_step(prefix):
  """The global step of a checkpoint: in its name, else its global_step variable, else None."""
  match = _CHECKPOINT_STEP.search(prefix)
  if match:
    return int(match.group(1))
  try:
    return int(tf.train.load_variable(prefix, tf.GraphKeys.GLOBAL_STEP))
  except (tf.errors.OpError, ValueError):
    return None


def _read_bytes(path):
  """The contents of the file `path`, or None if there is none."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, "rb") as reader:
    return reader.read()
