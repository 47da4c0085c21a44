"""How a script's model runs: the run options, and the Estimator built from them.

`RunOptions` holds the values of the shared TPU, scale and speed flags (flag_groups.py), which
a script's main() reads once. The same value goes to `make_estimator`, the one place that builds
what trains, evaluates and predicts, and to the script's model_fn_builder (`model_fn_options`,
`built_for`): the accumulation steps, the strategy and use_tpu reach both by one route, and
make_estimator refuses a model_fn built for other options.

With --use_tpu that is the TPUEstimator of the original scripts (TensorFlow 2.15); everywhere
else, on every TensorFlow, our own `runner.Runner`, which also trains under the
`tf.distribute` strategy of --distribution_strategy.
What a model is checked against and set up with lives in model_checks.py; how a training run
guards itself (a NaN step, a failed start, a lost worker) in training_guard.py.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import dataclasses
import json
import os
from typing import Optional

import precision
import runner
import script_io
import tensorflow.compat.v1 as tf
import training_guard

DISTRIBUTION_STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")


@dataclasses.dataclass(frozen=True)
class RunOptions(object):
  """Where and how a script runs: the values of the flags of flag_groups.py, field by field.

  A script's main() makes one from its flags (`from_flag_values`); a script without a flag
  group keeps the defaults, the original's behaviour. Options that contradict each other are
  refused when the value is made, with the message naming the flags.

  Attributes:
    use_tpu, tpu_name, tpu_zone, gcp_project, master, num_tpu_cores: the original's TPU flags.
    distribution_strategy: one of DISTRIBUTION_STRATEGIES, for training off TPU.
    num_gpus: the GPUs a mirrored strategy trains on, or None for all.
    peer_timeout_seconds: with multi_worker_mirrored, how long another worker may go without
      answering before this one stops (`training_guard.train`).
    gradient_accumulation_steps: micro-batches per update.
    precision: "fp32", "bf16" or "fp16" (`precision.compute_type_for`).
    use_xla: whether the sessions compile with XLA.
    batch_by_length: off TPU, whether to batch examples of similar length.
  """

  use_tpu: bool = False
  tpu_name: Optional[str] = None
  tpu_zone: Optional[str] = None
  gcp_project: Optional[str] = None
  master: Optional[str] = None
  num_tpu_cores: int = 8
  distribution_strategy: str = "none"
  num_gpus: Optional[int] = None
  peer_timeout_seconds: int = training_guard.PEER_TIMEOUT_SECONDS
  gradient_accumulation_steps: int = 1
  precision: str = "fp32"
  use_xla: bool = False
  batch_by_length: bool = False

  def __post_init__(self):
    strategy = self.distribution_strategy
    steps = self.gradient_accumulation_steps
    if strategy not in DISTRIBUTION_STRATEGIES:
      raise script_io.InputError("--distribution_strategy=%s: choose one of %s" %
                                 (strategy, ", ".join(DISTRIBUTION_STRATEGIES)))
    if steps < 1:
      raise script_io.InputError("--gradient_accumulation_steps=%d: must be 1 or more" % steps)
    if self.peer_timeout_seconds < 1:
      raise script_io.InputError("--peer_timeout_seconds=%d: must be 1 or more" %
                                 self.peer_timeout_seconds)
    if self.use_tpu and strategy != "none":
      raise script_io.InputError(
          "--use_tpu trains on TPU cores with TPUEstimator; --distribution_strategy=%s is for "
          "GPUs and CPUs: leave it at none" % strategy)
    if self.use_tpu and steps != 1:
      raise script_io.InputError(
          "--gradient_accumulation_steps=%d: gradient accumulation is not supported with "
          "--use_tpu; use more TPU cores (--num_tpu_cores) for a larger batch" % steps)
    if strategy == "multi_worker_mirrored" and self.num_gpus is not None:
      raise script_io.InputError(
          "--num_gpus is only for --distribution_strategy=mirrored; each worker of "
          "multi_worker_mirrored trains on all its visible GPUs (set CUDA_VISIBLE_DEVICES)")

  @classmethod
  def from_flag_values(cls, flag_values):
    """Makes the options from a dict of flag name -> value, e.g. `FLAGS.flag_values_dict()`.

    Fields without a flag of that name keep their defaults.
    """
    return cls(**{field.name: flag_values[field.name] for field in dataclasses.fields(cls)
                  if field.name in flag_values})

  @property
  def trims_padding(self):
    """Whether the input_fns cut batches to their longest sequence: off TPU (static shapes)."""
    return not self.use_tpu


def model_fn_options(options, use_tpu):
  """Returns the options a script's model_fn_builder builds for, checked against its use_tpu.

  The builders keep the original's `use_tpu` argument and take the run options besides.

  Args:
    options: a `RunOptions`, or None for the defaults with `use_tpu` (a model_fn that only
      predicts, or code written for the original signature).
    use_tpu: the builder's use_tpu argument.

  Raises:
    ValueError: `use_tpu` contradicts options.use_tpu.
  """
  if options is None:
    return RunOptions(use_tpu=use_tpu)
  if options.use_tpu != use_tpu:
    raise ValueError("use_tpu=%s contradicts the run options' use_tpu=%s: pass the same value" %
                     (use_tpu, options.use_tpu))
  return options


def built_for(model_fn, options):
  """Records on `model_fn` the `RunOptions` it was built for and returns it; see make_estimator."""
  model_fn.run_options = options
  return model_fn


def micro_batch_size(train_batch_size, gradient_accumulation_steps):
  """Returns the number of examples of one micro-batch: train_batch_size / accumulation steps.

  Raises:
    script_io.InputError: gradient_accumulation_steps (positive) does not divide
      train_batch_size.
  """
  if train_batch_size % gradient_accumulation_steps:
    raise script_io.InputError(
        "--train_batch_size=%d cannot be split into --gradient_accumulation_steps=%d "
        "micro-batches of equal size: choose a divisor" %
        (train_batch_size, gradient_accumulation_steps))
  return train_batch_size // gradient_accumulation_steps


def check_scale_options(options, train_batch_size, other_work):
  """Checks the scale options against a script's work before it reads or converts any data.

  Args:
    options: the `RunOptions`.
    train_batch_size: --train_batch_size, which --gradient_accumulation_steps must divide.
    other_work: dict of the script's flags for more than training -> their values, e.g.
      {"--do_eval": True, "--export_dir": None}; those set are refused by multi-worker runs.

  Raises:
    script_io.InputError: the batch does not split into micro-batches of equal size, or a
      multi-worker run is asked for more than training (each worker would evaluate, predict
      or export while the chief may still be writing the last checkpoint).
  """
  micro_batch_size(train_batch_size, options.gradient_accumulation_steps)
  given = [flag for flag, value in other_work.items() if value]
  if options.distribution_strategy == "multi_worker_mirrored" and given:
    raise script_io.InputError(
        "--distribution_strategy=multi_worker_mirrored only trains: leave out %s, and "
        "evaluate, predict or export afterwards in a run with --distribution_strategy=none on "
        "the same --output_dir" % " and ".join(given))


def make_estimator(model_fn, output_dir, options, train_batch_size=None, eval_batch_size=None,
                   predict_batch_size=None, save_checkpoints_steps=None,
                   iterations_per_loop=1000):
  """Builds what trains, evaluates and predicts with a script's `model_fn`.

  With use_tpu, the TPUEstimator of the original scripts (TensorFlow 2.15, the last release
  that has it). Everywhere else our own `runner.Runner`, on every TensorFlow: one device, or
  training under the `tf.distribute` strategy of distribution_strategy, with evaluation and
  prediction on one device so every example counts once. Both give the same results (the tests
  compare them to the bit); with use_xla their sessions compile with XLA where it pays
  (`precision.xla_pays`).

  With gradient_accumulation_steps N the input_fn gives micro-batches of train_batch_size / N
  examples (divided again among the replicas of a strategy); the model_fn, built for the same
  options, passes N to `optimization.create_optimizer`.

  Args:
    model_fn: model_fn(features, labels, mode, params) -> `runner.ModelSpec`.
    output_dir: where checkpoints and summaries go; training resumes from its latest checkpoint.
    options: the `RunOptions`; a model_fn the scripts build records its own (`built_for`), and
      they must be these.
    train_batch_size, eval_batch_size, predict_batch_size: global batch sizes.
    save_checkpoints_steps: save a checkpoint every so many steps, and at the end of training;
      None saves none at all (for runs that only predict from an init_checkpoint).
    iterations_per_loop: steps per TPU loop; off TPU, steps between the log lines of the
      training speed (at most 100).

  Returns:
    A `runner.Runner`, or with use_tpu a `tf.estimator.tpu.TPUEstimator`: both
    train(input_fn=..., max_steps=...), evaluate(input_fn=..., steps=...) and predict(input_fn).

  Raises:
    ValueError: `model_fn` was built for other options.
    script_io.InputError: the options do not fit the batch size, the machine, TF_CONFIG or this
      TensorFlow.
  """
  built_options = getattr(model_fn, "run_options", options)
  if built_options != options:
    raise ValueError("the model_fn was built for %s but the estimator is asked for %s: build "
                     "both from the same RunOptions" % (built_options, options))
  if train_batch_size is not None:
    train_batch_size = micro_batch_size(train_batch_size, options.gradient_accumulation_steps)
  if options.use_tpu:
    return _make_tpu_estimator(model_fn, output_dir, options, train_batch_size,
                               eval_batch_size, predict_batch_size, save_checkpoints_steps,
                               iterations_per_loop)
  strategy = _make_strategy(options)
  if strategy is not None and train_batch_size is not None:
    num_replicas = strategy.num_replicas_in_sync
    if train_batch_size % num_replicas:
      raise script_io.InputError(
          "--train_batch_size: micro-batches of %d examples cannot be shared evenly by the %d "
          "replicas of --distribution_strategy=%s" %
          (train_batch_size, num_replicas, options.distribution_strategy))
  return runner.Runner(
      model_fn, output_dir,
      train_batch_size=train_batch_size,
      eval_batch_size=eval_batch_size,
      predict_batch_size=predict_batch_size,
      save_checkpoints_steps=save_checkpoints_steps,
      log_step_count_steps=min(iterations_per_loop, 100),
      session_config=precision.xla_session_config(None, precision.xla_pays(options.use_xla)),
      strategy=strategy)


def tpu_estimator_available():
  """Whether this TensorFlow has TPUEstimator (2.15 and older)."""
  return hasattr(tf, "estimator")


def _make_tpu_estimator(model_fn, output_dir, options, train_batch_size, eval_batch_size,
                        predict_batch_size, save_checkpoints_steps, iterations_per_loop):
  """Builds the original's TPUEstimator for use_tpu, on a TensorFlow that still has it."""
  if not tpu_estimator_available():
    raise script_io.InputError(
        "--use_tpu trains with TPUEstimator, which TensorFlow %s no longer has: use TensorFlow "
        "2.15.1 (Python 3.9 to 3.11; requirements.txt installs it there)" % tf.__version__)
  tpu_cluster_resolver = None
  if options.tpu_name:
    tpu_cluster_resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        options.tpu_name, zone=options.tpu_zone, project=options.gcp_project)
  run_config = tf.estimator.tpu.RunConfig(
      cluster=tpu_cluster_resolver,
      master=options.master,
      model_dir=output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      session_config=precision.xla_session_config(None, options.use_xla),
      tpu_config=tf.estimator.tpu.TPUConfig(
          iterations_per_loop=iterations_per_loop,
          num_shards=options.num_tpu_cores,
          per_host_input_for_training=tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2))
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=True,
      model_fn=tpu_estimator_model_fn(model_fn),
      config=run_config,
      train_batch_size=train_batch_size,
      eval_batch_size=eval_batch_size,
      predict_batch_size=predict_batch_size)


def tpu_estimator_model_fn(model_fn):
  """Wraps a model_fn returning `runner.ModelSpec` into one returning a TPUEstimatorSpec."""

  def tpu_model_fn(features, labels, mode, params):
    spec = model_fn(features, labels, mode, params)
    return tf.estimator.tpu.TPUEstimatorSpec(**spec._asdict())

  return tpu_model_fn


def _make_strategy(options):
  """The tf.distribute strategy of distribution_strategy, or None to train on one device.

  It is built here, eagerly, as TensorFlow 2 builds it by default: a multi-worker strategy then
  starts this worker's server, which the runner's sessions connect to.
  """
  if options.distribution_strategy == "mirrored":
    return tf.distribute.MirroredStrategy(devices=_mirrored_devices(options.num_gpus))
  if options.distribution_strategy == "multi_worker_mirrored":
    _check_tf_config()
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  return None


def _mirrored_devices(num_gpus):
  """Returns the names of the devices MirroredStrategy trains on (see --num_gpus)."""
  gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
  if num_gpus is not None:
    if not 1 <= num_gpus <= len(gpus):
      raise script_io.InputError(
          "--num_gpus=%d: this machine has %d visible GPUs" % (num_gpus, len(gpus)))
    return gpus[:num_gpus]
  # Without a GPU, the CPU; or several logical CPUs where tf.config made them (the tests).
  return gpus or [device.name for device in tf.config.list_logical_devices("CPU")]


def _check_tf_config():
  """Checks that TF_CONFIG names a cluster of workers and this process's task in it."""
  try:
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
  except ValueError as error:
    raise script_io.InputError("TF_CONFIG is not JSON: %s" % error)
  cluster = tf_config.get("cluster") or {}
  task = tf_config.get("task") or {}
  if not cluster or "type" not in task or "index" not in task:
    raise script_io.InputError(
        "--distribution_strategy=multi_worker_mirrored needs the TF_CONFIG environment "
        "variable: {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
        "\"task\": {\"type\": \"worker\", \"index\": i}}")
  if set(cluster) - {"chief", "worker"}:
    raise script_io.InputError(
        "TF_CONFIG: multi_worker_mirrored trains on \"chief\" and \"worker\" tasks only, "
        "not %s" % ", ".join(sorted(set(cluster) - {"chief", "worker"})))
