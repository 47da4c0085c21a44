"""How a training run guards itself: `train` wraps a runner's or estimator's train().

A NaN loss names its step (`NanLossError`); a run that fails before it trains past the step it
started from leaves no checkpoint behind for a corrected re-run to resume from
(`discarding_checkpoints_without_progress`); a worker of a cluster that stops answering is
named, with the step all workers resume from, whether its process died (`unreachable_peers`,
`describe_lost_peers`) or froze, or its machine or network went away (`PeerWatch`).
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import contextlib
import json
import os
import re
import socket
import threading
import time

import numpy as np
import script_io
import tensorflow.compat.v1 as tf

# How long another worker may go without answering before the others stop: the default of
# --peer_timeout_seconds.
PEER_TIMEOUT_SECONDS = 300


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


def train(estimator, input_fn, max_steps, peer_timeout_seconds=PEER_TIMEOUT_SECONDS):
  """Trains as `estimator.train(input_fn=input_fn, max_steps=max_steps)`, with safeguards.

  A NaN loss raises `NanLossError`, which names the step (the estimator's own check does not).
  A run that fails or is interrupted before it trains past the step it started from leaves no
  checkpoint behind (`discarding_checkpoints_without_progress`): a corrected re-run into the
  same --output_dir would resume from it, with the failed run's weights or model.

  Under a multi-worker strategy, another worker that stops answering ends this one with one
  line naming it and the step to resume from: as soon as TensorFlow raises (a peer whose
  process died: `script_io.WorkerLostError`), else once the peer has not answered for
  peer_timeout_seconds (a frozen peer, or one whose machine or network went away, leaves this
  worker blocked inside TensorFlow, where no exception reaches it: `PeerWatch` ends the
  process).

  Args:
    estimator: what `make_estimator` returns; its model_dir is the --output_dir.
    input_fn, max_steps: as `estimator.train` takes them.
    peer_timeout_seconds: how long another worker may go without answering, in seconds
      (--peer_timeout_seconds).
  """
  tf_config_text = os.environ.get("TF_CONFIG")
  multi_worker = getattr(estimator, "multi_worker", False)
  watch = PeerWatch(_other_tasks(tf_config_text) if multi_worker else [], peer_timeout_seconds,
                    lambda lost: script_io.end_with_error(
                        _lost_worker_line(" and ".join(lost), estimator.model_dir)))
  try:
    # The watch stops first: the clean-up needs no peer.
    with discarding_checkpoints_without_progress(estimator.model_dir), watch:
      estimator.train(input_fn=input_fn, max_steps=max_steps,
                      hooks=[watch, _NanLossStepHook()])
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
    if not multi_worker:
      raise
    raise script_io.WorkerLostError(_lost_worker_line(
        describe_lost_peers(tf_config_text, error.message), estimator.model_dir)) from error


def _lost_worker_line(lost, model_dir):
  """The one line of a worker that stops because `lost` (their names) stopped answering."""
  latest = tf.train.latest_checkpoint(model_dir)
  return ("%s stopped answering; stopping. Restart all workers with the same command to resume "
          "from %s" % (lost, "step %d" % _checkpoint_step(latest) if latest
                       else "the start (no checkpoint was saved)"))


class _Task(collections.namedtuple("_Task", ["type", "index", "address"])):
  """A task of a TF_CONFIG cluster: its type ("chief", "worker"), index and host:port."""

  @property
  def name(self):
    """How the one-line errors name it, e.g. "worker 1 (127.0.0.1:2223)"."""
    return "%s %d (%s)" % self

  @property
  def device(self):
    """TensorFlow's name of the task, e.g. "/job:worker/replica:0/task:1"."""
    return "/job:%s/replica:0/task:%d" % (self.type, self.index)


def _other_tasks(tf_config_text):
  """The tasks of a TF_CONFIG cluster other than this process's, in the cluster's order.

  Args:
    tf_config_text: the TF_CONFIG environment variable (JSON), or None.

  Returns:
    List of `_Task`; empty without a cluster.
  """
  try:
    tf_config = json.loads(tf_config_text or "{}")
  except ValueError:
    return []
  task = tf_config.get("task") or {}
  return [_Task(task_type, index, address)
          for task_type, addresses in sorted((tf_config.get("cluster") or {}).items())
          for index, address in enumerate(addresses)
          if (task_type, index) != (task.get("type"), task.get("index"))]


# How long a peer's address may take to accept a TCP connection before it counts as lost.
PEER_CONNECT_SECONDS = 2


def unreachable_peers(tf_config_text):
  """The other tasks of a TF_CONFIG cluster whose address no longer accepts a TCP connection.

  After a worker fails with UnavailableError, this tells which peer is gone: a process that
  died leaves its port closed (refused at once), a machine that died does not answer (the
  connection times out). A frozen process still accepts connections (its system does).

  Args:
    tf_config_text: the TF_CONFIG environment variable (JSON), or None.

  Returns:
    List of "TYPE INDEX (HOST:PORT)" strings, e.g. ["worker 1 (127.0.0.1:2223)"], in the
    cluster's order; empty without a cluster or when every peer answers.
  """
  lost = []
  for task in _other_tasks(tf_config_text):
    host, _, port = task.address.rpartition(":")
    try:
      socket.create_connection((host, int(port)), timeout=PEER_CONNECT_SECONDS).close()
    except (OSError, ValueError):
      lost.append(task.name)
  return lost


# A task as TensorFlow's error messages name it: "/job:worker/replica:0/task:1" (a collective's
# or an RPC's peer) or "/job:worker/task:1" (the coordination service's).
_TASK_IN_MESSAGE = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")


def describe_lost_peers(tf_config_text, error_message):
  """Names the peers that a worker's UnavailableError or DeadlineExceededError is about.

  The best evidence first: the peers whose port is closed or whose machine does not answer
  (`unreachable_peers`); else the peers that TensorFlow's message names (a frozen process
  still accepts connections, and the RPC or heartbeat that timed out names it); else every
  other task, as one of which it must be.

  Args:
    tf_config_text: the TF_CONFIG environment variable (JSON).
    error_message: the message of the error.

  Returns:
    e.g. "worker 1 (127.0.0.1:2223)", "worker 1 (...) and worker 2 (...)", or, when nothing
    tells which, "worker 1 (...) or worker 2 (...)".
  """
  lost = unreachable_peers(tf_config_text)
  if lost:
    return " and ".join(lost)
  tasks = _other_tasks(tf_config_text)
  named = {(task_type, int(index))
           for task_type, index in _TASK_IN_MESSAGE.findall(error_message)}
  lost = [task.name for task in tasks if (task.type, task.index) in named]
  if lost:
    return " and ".join(lost)
  return " or ".join(task.name for task in tasks)


class PeerWatch(tf.train.SessionRunHook):
  """Ends the process when another worker has not answered for timeout_seconds.

  TensorFlow's collectives wait for every worker. When one dies, its closed port fails them at
  once; when one freezes (stopped, swapping, deadlocked) or its machine or network goes away
  without closing the connections, they wait forever, as does a first step that asks the chief
  for its step ids, retrying. The coordination service notices the missing heartbeats, but
  what it aborts is not the sessions' collectives. A session blocked so returns to no
  exception and no signal handler, so the watch, on its own thread, ends the process
  (`on_lost`).

  A peer answers when its TensorFlow server answers the health probe, which its server threads
  do however busy the peer is (a long first step, XLA compiling, a checkpoint being restored or
  saved, input files being written): the timeout bounds how long a peer may be silent, not
  how long a step may take. The watch runs from the start of training (`begin`) to the end
  of its steps (`end`, before the last checkpoint is saved, when peers may already have left),
  or until `stop`, or the end of a `with` block.
  """

  def __init__(self, peers, timeout_seconds, on_lost, probe=None, clock=time.monotonic):
    """Creates the watch; it starts with training (`begin`).

    Args:
      peers: the `_Task`s of the other workers.
      timeout_seconds: how long a peer may go without answering.
      on_lost: function called once, from the watch's thread, with the names of the peers
        that have not answered for timeout_seconds; it ends the process.
      probe: probe(task, timeout_seconds) -> whether the task answered in time; default
        TensorFlow's health probe (`probe_peer`).
      clock: the function that tells the time in seconds.
    """
    self._peers = list(peers)
    self._timeout_seconds = timeout_seconds
    self._on_lost = on_lost
    self._probe = probe or probe_peer
    self._clock = clock
    # Probed a few times per timeout, each probe waiting at most as long.
    self._probe_seconds = min(10.0, timeout_seconds / 3.0)
    self._last_answers = dict.fromkeys(self._peers, clock())
    self._stopped = threading.Event()
    self._lock = threading.Lock()

  def begin(self):
    if not self._peers or self._stopped.is_set():
      return
    self._last_answers = dict.fromkeys(self._peers, self._clock())
    threading.Thread(target=self._watch, name="PeerWatch", daemon=True).start()

  def end(self, session):
    self.stop()

  def stop(self):
    """Stops watching; once it returns, `on_lost` is not called any more."""
    with self._lock:
      self._stopped.set()

  def __enter__(self):
    return self

  def __exit__(self, *unused_exception_info):
    self.stop()

  def check(self):
    """Probes each peer once; returns the names of those silent for timeout_seconds."""
    for peer in self._peers:
      if self._probe(peer, self._probe_seconds):
        self._last_answers[peer] = self._clock()
    now = self._clock()
    return [peer.name for peer in self._peers
            if now - self._last_answers[peer] >= self._timeout_seconds]

  def _watch(self):
    while not self._stopped.wait(self._probe_seconds):
      lost = self.check()
      if lost:
        with self._lock:
          if not self._stopped.is_set():
            self._on_lost(lost)
        return


def probe_peer(task, timeout_seconds):
  """Whether the TensorFlow server of `task` answers a health probe within timeout_seconds.

  The probe goes through the collectives' runtime, which a multi-worker strategy sets up. It
  holds Python's lock while it waits: other threads pause for as long as a silent peer takes.

  Args:
    task: a `_Task` of the cluster.
    timeout_seconds: how long to wait for the answer.
  """
  # TensorFlow's probe of a peer's server (what MultiWorkerMirroredStrategy's own health check
  # called before the coordination service replaced it) has no public name: the one import of
  # TensorFlow's internals, made only where a multi-worker run needs it.
  from tensorflow.python.eager import context  # pylint: disable=g-import-not-at-top
  try:
    context.context().check_collective_ops_peer_health(
        task.device, timeout_in_ms=int(timeout_seconds * 1000))
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
          tf.errors.FailedPreconditionError):
    return False  # Down, silent, or restarted since (a new process).
  return True


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
