"""Trains, evaluates and predicts with a TPUEstimator model_fn, without tf.estimator.

TensorFlow 2.16 and later ship no Estimator. `Runner` drives the scripts' model_fn/input_fn
contract with public `tf.compat.v1` pieces only (graphs, `MonitoredSession`, `Scaffold` and
`Saver`, session hooks, summaries, `tf.metrics`) and `tf.distribute`, the same on TensorFlow 2.15
and the newest. It keeps what the TPUEstimator of the original scripts does off TPU:

  runner = Runner(model_fn, output_dir, train_batch_size=32, eval_batch_size=8,
                  save_checkpoints_steps=1000)
  runner.train(input_fn=train_input_fn, max_steps=num_train_steps)
  result = runner.evaluate(input_fn=eval_input_fn)      # the metrics, "loss", "global_step"
  for prediction in runner.predict(input_fn=predict_input_fn): ...

- model_fn(features, labels, mode, params) returns a `ModelSpec` (or a
  `tf.estimator.tpu.TPUEstimatorSpec`, read through the same attributes); `mode` is one of
  `ModeKeys`, whose values are tf.estimator's. input_fn(params) returns a `tf.data.Dataset` of
  feature dicts, or of (features, labels) pairs. Both get params["batch_size"].
- The model directory is laid out as Estimator lays it out (model.ckpt-N, "checkpoint",
  graph.pbtxt, events, eval/): a directory trained by either resumes in the other.
- Under a `tf.compat.v1.distribute` strategy, training runs the model_fn once per replica:
  `MirroredStrategy` for the devices of one machine, `experimental.MultiWorkerMirroredStrategy`
  for several processes named by TF_CONFIG. Evaluation and prediction run on one device.
- SIGINT (Ctrl-C) or SIGTERM during training stops it after the running step, saves a
  checkpoint and raises `TrainingInterrupted`, which names it; training resumes from it. A
  second signal ends the process at once.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import os
import signal
import threading

import numpy as np
import tensorflow.compat.v1 as tf


class ModeKeys(object):
  """The modes a model_fn is called in: the values of `tf.estimator.ModeKeys`."""
  TRAIN = "train"
  EVAL = "eval"
  PREDICT = "infer"


class ModelSpec(collections.namedtuple("ModelSpec", [
    "mode", "predictions", "loss", "train_op", "eval_metrics", "scaffold_fn",
    "training_hooks", "evaluation_hooks", "prediction_hooks"])):
  """What a model_fn returns: the fields of `tf.estimator.tpu.TPUEstimatorSpec` a Runner uses.

  Attributes:
    mode: a `ModeKeys` value.
    predictions: PREDICT: a Tensor, or a dict of name -> Tensor, each [batch_size, ...].
    loss: TRAIN and EVAL: float32 Tensor [], the mean loss of the batch.
    train_op: TRAIN: the Operation of one training step.
    eval_metrics: EVAL: (metric_fn, tensors), tensors a list or a dict of Tensors that
      metric_fn takes as arguments; it returns a dict of name -> (value, update_op), as the
      functions of `tf.metrics` give them.
    scaffold_fn: optional function returning a `tf.train.Scaffold`, called after model_fn.
    training_hooks, evaluation_hooks, prediction_hooks: `tf.train.SessionRunHook`s.
  """

  def __new__(cls, mode, predictions=None, loss=None, train_op=None, eval_metrics=None,
              scaffold_fn=None, training_hooks=None, evaluation_hooks=None,
              prediction_hooks=None):
    return super(ModelSpec, cls).__new__(
        cls, mode, predictions, loss, train_op, eval_metrics, scaffold_fn,
        tuple(training_hooks or ()), tuple(evaluation_hooks or ()),
        tuple(prediction_hooks or ()))


class TrainingInterrupted(Exception):
  """Training stopped on SIGINT or SIGTERM, after saving a checkpoint where it saves any.

  Attributes:
    signal_name: "SIGINT" or "SIGTERM"; None when another worker received it.
    checkpoint_path: the latest checkpoint of the model directory, from which the next
      `Runner.train` resumes; None when there is none.
  """

  def __init__(self, signal_name, checkpoint_path):
    super(TrainingInterrupted, self).__init__(
        "training stopped by %s; %s" % (
            signal_name or "a signal to another worker",
            "the latest checkpoint is %s: training again resumes from it" % checkpoint_path
            if checkpoint_path else "no checkpoint was saved"))
    self.signal_name = signal_name
    self.checkpoint_path = checkpoint_path


# Steps between TensorBoard summaries of training, and checkpoints kept at least every so many
# hours whatever keep_checkpoint_max says: RunConfig's defaults.
SAVE_SUMMARY_STEPS = 100
KEEP_CHECKPOINT_EVERY_N_HOURS = 10000


class Runner(object):
  """Trains, evaluates and predicts with a TPUEstimator model_fn, as TPUEstimator does off TPU.

  Each of `train`, `evaluate` and `predict` builds its own graph: the input_fn's batches, the
  model_fn in that mode, and a session that restores the latest checkpoint of model_dir (or
  initialises the variables, with whatever `tf.train.init_from_checkpoint` the model_fn asked
  for, when there is none).

  Under a strategy, input_fn and model_fn get one replica's share of train_batch_size as
  params["batch_size"]; each replica trains on batches of its own. Each worker of a multi-worker
  strategy reads the whole input and keeps every k-th batch (k workers); all workers restore
  the latest checkpoint of model_dir, which must be a directory they share, and only the chief
  writes into it. The strategy must have been built eagerly (TensorFlow 2's default), which
  starts this worker's server. A worker that dies makes the others fail at their next step
  (tf.errors.UnavailableError); one that freezes makes them wait inside TensorFlow
  (`training_guard.PeerWatch` ends such a wait); a signal to one worker stops them all after
  the same step.
  """

  def __init__(self, model_fn, model_dir, train_batch_size=None, eval_batch_size=None,
               predict_batch_size=None, save_checkpoints_steps=None, keep_checkpoint_max=5,
               log_step_count_steps=100, session_config=None, strategy=None):
    """Creates a Runner; nothing runs until train, evaluate or predict.

    Args:
      model_fn: model_fn(features, labels, mode, params) -> `ModelSpec`.
      model_dir: where checkpoints and summaries go, and where they are restored from; None
        for a Runner that only predicts, from the model_fn's initial variables.
      train_batch_size, eval_batch_size, predict_batch_size: examples per step, all replicas
        and workers together; None where that mode is not used.
      save_checkpoints_steps: save a checkpoint every so many global steps and at the end of
        training; None saves none.
      keep_checkpoint_max: the number of recent checkpoints kept.
      log_step_count_steps: global steps between the log lines (and TensorBoard points) of
        the training speed and loss.
      session_config: a `tf.ConfigProto`, or None for Estimator's default; under a strategy,
        its inter-op threads are raised to what the all-reduces need.
      strategy: a `tf.compat.v1.distribute` strategy to train under, or None for one device.

    Raises:
      ValueError: train_batch_size is not a multiple of the strategy's replicas.
    """
    self._model_fn = model_fn
    self.model_dir = model_dir
    self._train_batch_size = train_batch_size
    self._eval_batch_size = eval_batch_size
    self._predict_batch_size = predict_batch_size
    self._save_checkpoints_steps = save_checkpoints_steps
    self._keep_checkpoint_max = keep_checkpoint_max
    self._log_step_count_steps = log_step_count_steps
    self._strategy = strategy
    self._session_config = _session_config(session_config, strategy)
    if strategy is not None:
      num_replicas = strategy.num_replicas_in_sync
      if train_batch_size is not None and train_batch_size % num_replicas:
        raise ValueError("train_batch_size=%d cannot be shared evenly by %d replicas" %
                         (train_batch_size, num_replicas))

  @property
  def multi_worker(self):
    """Whether training runs under a multi-worker strategy, with the processes of TF_CONFIG."""
    return self._strategy is not None and self._strategy.extended.experimental_between_graph

  def eval_dir(self, name=None):
    """The directory of the evaluation summaries: model_dir/eval or model_dir/eval_<name>."""
    return os.path.join(self.model_dir, "eval_" + name if name else "eval")

  def train(self, input_fn, max_steps, hooks=None):
    """Trains until the global step, which counts updates, reaches max_steps.

    Resumes from the latest checkpoint of model_dir; returns at once if it is at max_steps.
    Saves a checkpoint every save_checkpoints_steps global steps and after the last one,
    and writes the loss and the speed to TensorBoard events in model_dir.

    Args:
      input_fn: input_fn(params) -> Dataset of training batches (it may repeat forever).
      max_steps: int, the global step to train to.
      hooks: more `tf.train.SessionRunHook`s of the training session, run before its own
        (the loss is in the LOSSES collection, as Estimator puts it there).

    Returns:
      self.

    Raises:
      TrainingInterrupted: SIGINT or SIGTERM arrived, in this process or in another worker's;
        every worker stopped after the same step, whose checkpoint the chief saved.
    """
    start_step = _checkpoint_global_step(self.model_dir)
    if start_step >= max_steps:
      tf.logging.info("Skipping training: the checkpoint of %s is at global step %d, "
                      "max_steps=%d", self.model_dir, start_step, max_steps)
      return self
    strategy = self._strategy or tf.distribute.get_strategy()
    with tf.Graph().as_default(), strategy.scope(), _StopOnSignals() as stop:
      global_step = _create_global_step(strategy)
      iterator = self._input_iterator(input_fn, strategy, self._train_batch_size)
      features, labels = _features_and_labels(iterator.get_next())
      spec, scaffold, loss, train_op = self._replicated_training_step(strategy, features,
                                                                      labels)
      scaffold = self._saving_scaffold(scaffold, spec.loss)
      tf.add_to_collection(tf.GraphKeys.LOSSES, loss)
      stop_hook = _StopHook(stop, strategy)
      hooks = list(hooks or []) + [_IteratorInitializerHook(iterator.initializer),
                                   tf.train.StopAtStepHook(last_step=max_steps),
                                   tf.train.NanTensorHook(loss),
                                   stop_hook]
      hooks.extend(spec.training_hooks)
      hooks.extend(self._logging_hooks(strategy, loss, global_step))
      hooks.extend(self._writing_hooks(strategy, scaffold))
      loss_value = self._run_training(train_op, loss, scaffold, hooks, strategy)
    tf.logging.info("Loss for final step: %s.", loss_value)
    if stop.signal_name or stop_hook.stopped:
      raise TrainingInterrupted(stop.signal_name, tf.train.latest_checkpoint(self.model_dir))
    return self

  def evaluate(self, input_fn, steps=None, name=None):
    """Evaluates the latest checkpoint of model_dir on one device, as Estimator.evaluate does.

    Without a checkpoint, evaluates the initial variables (with any init_from_checkpoint).

    Args:
      input_fn: input_fn(params) -> Dataset, read until it ends or for `steps` batches.
      steps: the number of batches, or None for all.
      name: the evaluation's name: its summaries go to eval_dir(name).

    Returns:
      dict of metric name -> value: those of the model_fn's eval_metrics, "loss" (the mean
      over the batches of the model_fn's loss) and "global_step" (of the checkpoint).

    Raises:
      ValueError: this Runner trains under a multi-worker strategy.
    """
    self._check_not_multi_worker("evaluate")
    checkpoint_path = self.model_dir and tf.train.latest_checkpoint(self.model_dir)
    if not checkpoint_path:
      tf.logging.info("No checkpoint in %s: evaluating the initial variables", self.model_dir)
    with tf.Graph().as_default():
      global_step = tf.train.create_global_step()
      iterator = self._input_iterator(input_fn, tf.distribute.get_strategy(),
                                      self._eval_batch_size)
      features, labels = _features_and_labels(iterator.get_next())
      spec = self._call_model_fn(features, labels, ModeKeys.EVAL, self._eval_batch_size)
      metrics = _eval_metric_ops(spec)
      update_op = tf.group([update for _, (_, update) in sorted(metrics.items())])
      values = {name: value for name, (value, _) in metrics.items()}
      values["global_step"] = global_step
      final_values = tf.train.FinalOpsHook(values)
      hooks = [_IteratorInitializerHook(iterator.initializer), final_values]
      hooks.extend(spec.evaluation_hooks)
      tf.logging.info("Starting evaluation of %s", checkpoint_path or "the initial variables")
      with self._inference_session(spec, checkpoint_path, hooks) as session:
        batches = 0
        while not session.should_stop() and (steps is None or batches < steps):
          session.run(update_op)
          batches += 1
      results = final_values.final_ops_values
      tf.logging.info("Evaluation of %d batches at global step %d: %s", batches,
                      results["global_step"],
                      ", ".join("%s = %s" % item for item in sorted(results.items())))
      _write_scalar_summaries(self.eval_dir(name), results, results["global_step"])
    return results

  def predict(self, input_fn, yield_single_examples=True):
    """Yields the model_fn's predictions from the latest checkpoint, as Estimator.predict does.

    Without a checkpoint, predicts with the initial variables (with any init_from_checkpoint).

    Args:
      input_fn: input_fn(params) -> Dataset, read until it ends.
      yield_single_examples: yield one example's predictions at a time (a dict of arrays,
        or an array), rather than a whole batch.

    Yields:
      The predictions of each example, or of each batch.

    Raises:
      ValueError: the predictions of a batch differ in their number of examples, or this
        Runner trains under a multi-worker strategy.
    """
    self._check_not_multi_worker("predict")
    checkpoint_path = self.model_dir and tf.train.latest_checkpoint(self.model_dir)
    if not checkpoint_path:
      tf.logging.info("No checkpoint in %s: predicting with the initial variables",
                      self.model_dir)
    with tf.Graph().as_default():
      tf.train.create_global_step()
      iterator = self._input_iterator(input_fn, tf.distribute.get_strategy(),
                                      self._predict_batch_size)
      features, _ = _features_and_labels(iterator.get_next())
      spec = self._call_model_fn(features, None, ModeKeys.PREDICT, self._predict_batch_size)
      hooks = [_IteratorInitializerHook(iterator.initializer)]
      hooks.extend(spec.prediction_hooks)
      with self._inference_session(spec, checkpoint_path, hooks) as session:
        while not session.should_stop():
          batch = session.run(spec.predictions)
          if yield_single_examples:
            for example in _split_batch(batch):
              yield example
          else:
            yield batch

  def _check_not_multi_worker(self, action):
    # A worker that is not the chief could read the checkpoint before the chief has written the
    # last one, or not see it at all when model_dir is not shared.
    if self.multi_worker:
      raise ValueError("a Runner under a multi-worker strategy only trains: %s with a Runner "
                       "without a strategy on the same model_dir" % action)

  def _input_iterator(self, input_fn, strategy, batch_size):
    """Returns the strategy's iterator over the batches of input_fn, one per replica.

    Each input pipeline (one per worker) gets one replica's share of batch_size and keeps
    every k-th batch of the whole input, k pipelines in all.
    """
    replica_batch_size = batch_size // strategy.num_replicas_in_sync

    def pipeline(input_context):
      dataset = input_fn({"batch_size": replica_batch_size})
      if input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
      return dataset

    return strategy.make_input_fn_iterator(pipeline)

  def _call_model_fn(self, features, labels, mode, batch_size):
    return self._model_fn(features, labels, mode, {"batch_size": batch_size})

  def _replicated_training_step(self, strategy, features, labels):
    """Calls the model_fn in TRAIN mode on each replica.

    Args:
      strategy: the strategy (the default one for one device), whose scope is entered.
      features, labels: the iterator's batch, one per replica.

    Returns:
      (the first replica's spec, its Scaffold or None, float32 [] loss averaged over the
      replicas, the grouped train op).
    """
    specs_and_scaffolds = []
    replica_batch_size = self._train_batch_size // strategy.num_replicas_in_sync

    def replica_step(features, labels):
      spec = self._call_model_fn(features, labels, ModeKeys.TRAIN, replica_batch_size)
      # scaffold_fn may synchronise the replicas (init_from_checkpoint does): each calls it.
      specs_and_scaffolds.append((spec, spec.scaffold_fn() if spec.scaffold_fn else None))
      return spec.loss, spec.train_op

    loss, train_op = strategy.extended.call_for_each_replica(replica_step,
                                                             args=(features, labels))
    loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
    spec, scaffold = specs_and_scaffolds[0]
    return spec, scaffold, loss, strategy.group(train_op)

  def _saving_scaffold(self, scaffold, loss):
    """The model_fn's Scaffold, or a default one, saving and summarising as Estimator does."""
    tf.add_to_collection(tf.GraphKeys.LOSSES, loss)
    if not any(summary.op.name == "loss" for summary in tf.get_collection(tf.GraphKeys.SUMMARIES)):
      tf.summary.scalar("loss", loss)
    if not ((scaffold and scaffold.saver) or tf.get_collection(tf.GraphKeys.SAVERS)):
      tf.add_to_collection(tf.GraphKeys.SAVERS, tf.train.Saver(
          sharded=True, max_to_keep=self._keep_checkpoint_max,
          keep_checkpoint_every_n_hours=KEEP_CHECKPOINT_EVERY_N_HOURS, defer_build=True,
          save_relative_paths=True))
    return scaffold or tf.train.Scaffold()

  def _logging_hooks(self, strategy, loss, global_step):
    """Hooks logging the loss and the speed every log_step_count_steps.

    Args:
      strategy: the strategy, whose chief writes the speed to TensorBoard.
      loss: float32 Tensor [].
      global_step: int64 Tensor [], the global step read.
    """
    if not self._log_step_count_steps:
      return []
    return [
        tf.train.LoggingTensorHook({"loss": loss, "step": global_step},
                                   every_n_iter=self._log_step_count_steps),
        _StepRateHook(global_step, self._log_step_count_steps, self._train_batch_size,
                      self.model_dir if strategy.extended.should_save_summary else None),
    ]

  def _writing_hooks(self, strategy, scaffold):
    """The hooks of the chief that write checkpoints and summaries into model_dir."""
    hooks = []
    if strategy.extended.should_checkpoint and self._save_checkpoints_steps:
      hooks.append(tf.train.CheckpointSaverHook(
          self.model_dir, save_steps=self._save_checkpoints_steps, scaffold=scaffold))
    if strategy.extended.should_save_summary:
      hooks.append(tf.train.SummarySaverHook(
          save_steps=SAVE_SUMMARY_STEPS, output_dir=self.model_dir, scaffold=scaffold))
    return hooks

  def _run_training(self, train_op, loss, scaffold, hooks, strategy):
    """Runs train_op until a hook stops; returns the loss of the last step."""
    loss_value = None
    with tf.train.SingularMonitoredSession(
        hooks=hooks, scaffold=scaffold, master=_session_target(strategy),
        config=strategy.update_config_proto(self._session_config),
        checkpoint_dir=self.model_dir) as session:
      while not session.should_stop():
        _, loss_value = session.run([train_op, loss])
    return loss_value

  def _inference_session(self, spec, checkpoint_path, hooks):
    """A session on one device that restores checkpoint_path, or initialises without one."""
    scaffold = spec.scaffold_fn() if spec.scaffold_fn else tf.train.Scaffold()
    return tf.train.MonitoredSession(
        session_creator=tf.train.ChiefSessionCreator(
            scaffold=scaffold, checkpoint_filename_with_path=checkpoint_path,
            config=self._session_config),
        hooks=hooks)


# The graph collection where the hooks of tf.train find the global step's value (the
# GLOBAL_STEP_READ_KEY of TensorFlow's training_util), which Estimator fills the same way. Left
# empty, each hook reads the variable through a tf.cond that takes its initial value as an
# input; a multi-worker variable's initial value is a broadcast from the chief, so every read
# would start a broadcast that the other workers never join.
_GLOBAL_STEP_READ_COLLECTION = "global_step_read_op_cache"


def _create_global_step(strategy):
  """Creates the global step variable; returns its value (int64 Tensor []) for the hooks."""
  global_step = strategy.extended.read_var(tf.train.create_global_step())
  tf.add_to_collection(_GLOBAL_STEP_READ_COLLECTION, global_step)
  return global_step


def _session_config(session_config, strategy):
  """session_config, or Estimator's default; under a strategy, with room for the all-reduces.

  An all-reduce holds an inter-op thread while it waits for every replica: with one thread
  per core, two replicas on a 2-core machine deadlocked. The logical CPUs of tf.config (the
  tests' stand-ins for GPUs) are only visible to a session that counts them.
  """
  config = tf.ConfigProto(allow_soft_placement=True)
  if session_config is None:
    # RewriterConfig.ONE: Grappler's optimizers run once, not twice, as Estimator has them.
    config.graph_options.rewrite_options.meta_optimizer_iterations = 1
  else:
    config.CopyFrom(session_config)
  if strategy is not None:
    config.device_count["CPU"] = len(tf.config.list_logical_devices("CPU"))
    config.inter_op_parallelism_threads = max(config.inter_op_parallelism_threads,
                                              os.cpu_count() or 1,
                                              8 * strategy.num_replicas_in_sync)
  return config


def _session_target(strategy):
  """The master of this worker's sessions: its own server in a multi-worker cluster."""
  resolver = strategy.cluster_resolver
  if resolver is None or not resolver.cluster_spec().jobs:
    return ""
  return resolver.master(resolver.task_type, resolver.task_id, rpc_layer="grpc")


def _checkpoint_global_step(model_dir):
  """The global step of the latest checkpoint in model_dir, or 0 without one."""
  checkpoint_path = tf.train.latest_checkpoint(model_dir)
  if not checkpoint_path:
    return 0
  return int(tf.train.load_checkpoint(checkpoint_path).get_tensor("global_step"))


def _features_and_labels(element):
  """Splits a dataset element into (features, labels); labels None where there are none."""
  if isinstance(element, tuple) and len(element) == 2:
    return element
  return element, None


def _eval_metric_ops(spec):
  """The model_fn's metrics and the mean loss: dict of name -> (value, update_op)."""
  metrics = {}
  if spec.eval_metrics is not None:
    metric_fn, tensors = spec.eval_metrics
    metrics = dict(metric_fn(**tensors) if isinstance(tensors, dict) else metric_fn(*tensors))
  if "loss" in metrics:
    raise ValueError("eval_metrics may not be named \"loss\": the mean loss is reported so")
  metrics["loss"] = tf.metrics.mean(spec.loss)
  return metrics


def _split_batch(batch):
  """Yields the examples of a batch of predictions (a dict of arrays, or an array)."""
  if not isinstance(batch, dict):
    for example in batch:
      yield example
    return
  sizes = {name: value.shape[0] for name, value in batch.items()}
  if len(set(sizes.values())) > 1:
    raise ValueError("the predictions of a batch hold different numbers of examples: %s" %
                     ", ".join("%s %d" % item for item in sorted(sizes.items())))
  for index in range(next(iter(sizes.values()), 0)):
    yield {name: value[index] for name, value in batch.items()}


def _write_scalar_summaries(output_dir, results, global_step):
  """Writes the numbers of results as TensorBoard scalars at global_step (in a graph)."""
  summary = tf.Summary()
  for name, value in sorted(results.items()):
    if name != "global_step" and np.ndim(value) == 0:
      summary.value.add(tag=name, simple_value=float(value))
  writer = tf.summary.FileWriterCache.get(output_dir)
  writer.add_summary(summary, global_step)
  writer.flush()


class _IteratorInitializerHook(tf.train.SessionRunHook):
  """Initialises the input iterator once the session exists."""

  def __init__(self, initializer):
    self._initializer = initializer

  def after_create_session(self, session, coord):
    session.run(self._initializer)


class _StepRateHook(tf.train.SessionRunHook):
  """Logs global_step/sec and examples/sec every so many global steps, and writes them.

  examples/sec counts the runs of the train op, each of examples_per_run examples, so it stays
  right when several runs make one update (gradient accumulation).
  """

  def __init__(self, global_step, every_n_steps, examples_per_run, output_dir):
    self._global_step = global_step
    self._timer = tf.train.SecondOrStepTimer(every_steps=every_n_steps)
    self._examples_per_run = examples_per_run
    self._output_dir = output_dir
    self._runs = 0

  def begin(self):
    self._writer = self._output_dir and tf.summary.FileWriterCache.get(self._output_dir)

  def before_run(self, run_context):
    return tf.train.SessionRunArgs(self._global_step)

  def after_run(self, run_context, run_values):
    self._runs += 1
    # The fetched step may be read before the update; the exact one is read when it matters.
    if not self._timer.should_trigger_for_step(run_values.results + 1):
      return
    global_step = run_context.session.run(self._global_step)
    if not self._timer.should_trigger_for_step(global_step):
      return
    elapsed_time, elapsed_steps = self._timer.update_last_triggered_step(global_step)
    runs, self._runs = self._runs, 0
    if elapsed_time is None:
      return
    rates = (("global_step/sec", elapsed_steps / elapsed_time),
             ("examples/sec", runs * self._examples_per_run / elapsed_time))
    for tag, rate in rates:
      tf.logging.info("%s: %g", tag, rate)
    if self._writer:
      self._writer.add_summary(
          tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=rate)
                            for tag, rate in rates]), global_step)


class _StopOnSignals(object):
  """Within `with`, the first SIGINT or SIGTERM is recorded, a second one ends the process.

  Python runs signal handlers between steps, never inside one, so recording the signal and
  letting `_StopHook` stop the session ends training at the next step boundary. A second
  signal restores the system's default action and sends itself again: the process ends at
  once, even inside a step that never returns.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signal_name = None
    self._previous_handlers = {}

  def __enter__(self):
    # Handlers can only be installed from the main thread; elsewhere signals keep theirs.
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous_handlers[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *unused_exception_info):
    for signum, handler in self._previous_handlers.items():
      signal.signal(signum, handler)

  def _handle(self, signum, unused_frame):
    if self.signal_name:
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
      return
    self.signal_name = signal.Signals(signum).name


class _StopHook(tf.train.SessionRunHook):
  """Stops training after the step in which any worker had recorded a signal.

  Each step sums, over all replicas of all workers, whether their process has received a
  signal (`_StopOnSignals`), so every worker stops after the same step: the chief saves its
  checkpoint and the others do not wait for it in an all-reduce that never comes.

  Attributes:
    stopped: whether a signal, here or in another worker, stopped training.
  """

  def __init__(self, stop, strategy):
    self._stop = stop
    self._signaled = tf.placeholder_with_default(0, [], name="signal_received")
    votes = strategy.extended.call_for_each_replica(lambda: tf.identity(self._signaled))
    self._votes = strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)
    self.stopped = False

  def before_run(self, run_context):
    return tf.train.SessionRunArgs(
        self._votes, feed_dict={self._signaled: int(bool(self._stop.signal_name))})

  def after_run(self, run_context, run_values):
    if run_values.results and not self.stopped:
      tf.logging.warning("%s: stopping after this step and saving a checkpoint; a second "
                         "signal ends the process at once",
                         self._stop.signal_name or "A signal to another worker")
      self.stopped = True
      run_context.request_stop()
