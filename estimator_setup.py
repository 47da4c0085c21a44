"""How a script's model runs: the run options, and the Estimator built from them.

`RunOptions` holds the values of the shared TPU, scale and speed flags (flag_groups.py), which
a script's main() reads once. The same value goes to `make_estimator`, the one place that builds
what trains, evaluates and predicts, and to the script's model_fn_builder (`model_fn_options`,
`built_for`): the accumulation steps, the strategy and use_tpu reach both by one route, and
make_estimator refuses a model_fn built for other options.

With --use_tpu that is the TPUEstimator of the original scripts (TensorFlow 2.15); everywhere
else, on every TensorFlow, our own `runner.Runner`, which also trains under the
`tf.distribute` strategy of --distribution_strategy.
The rest is what the scripts set a model up with: the BERT config checked against the sequence
length (`load_bert_config`) and the vocabulary (`check_vocab_fits_model`); the checkpoints checked
against the config before anything is built, --init_checkpoint (`check_init_checkpoint`) and the
one --output_dir would resume from (`check_output_dir_checkpoint`); the initialisation from
--init_checkpoint; and `train`, which names the step of a NaN loss and leaves no checkpoint of a
failed start behind for the next run to resume from.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import contextlib
import dataclasses
import json
import os
import re
import socket
from typing import Optional

import modeling
import numpy as np
import precision
import runner
import script_io
import tensorflow.compat.v1 as tf

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


def load_bert_config(bert_config_file, max_seq_length, is_training=True):
  """Reads a BERT config file and checks it, and that `max_seq_length` fits the model.

  Args:
    bert_config_file: path of a bert_config.json (flag --bert_config_file).
    max_seq_length: the sequence length the script will feed (flag --max_seq_length).
    is_training: whether the run trains, and so needs valid dropout probabilities.

  Returns:
    A `modeling.BertConfig`.

  Raises:
    script_io.InputError: missing or malformed file, a hyper-parameter no `BertModel` can be
      built with (`BertConfig.validate`), or a sequence longer than the model's position
      embeddings.
  """
  script_io.require_file(bert_config_file, "bert_config_file")
  try:
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
    bert_config.validate(is_training)
  except (ValueError, TypeError) as error:
    raise script_io.InputError(
        "--bert_config_file: %s is not a BERT config: %s" % (bert_config_file, error))
  if max_seq_length > bert_config.max_position_embeddings:
    raise script_io.InputError(
        "--max_seq_length=%d is longer than the model allows: %s has "
        "max_position_embeddings=%d" %
        (max_seq_length, bert_config_file, bert_config.max_position_embeddings))
  return bert_config


def check_vocab_fits_model(vocab, vocab_file, bert_config, bert_config_file):
  """Raises InputError if the vocabulary has ids beyond the model's word embeddings.

  A vocabulary smaller than vocab_size is fine, as in the original (some rows of the table are
  never looked up). A larger one gives ids the table lacks: on CPU the lookup fails in the first
  step, on GPU and TPU (one-hot) it silently reads zeros.

  Args:
    vocab: the tokenizer's dict of token -> id.
    vocab_file, bert_config_file: the flags the two came from, for the message.
    bert_config: the `modeling.BertConfig`.
  """
  num_ids = max(vocab.values()) + 1
  if num_ids > bert_config.vocab_size:
    raise script_io.InputError(
        "--vocab_file %s has %d tokens but --bert_config_file %s has vocab_size=%d: pass the "
        "vocab.txt and bert_config.json of the same model" %
        (vocab_file, num_ids, bert_config_file, bert_config.vocab_size))


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
  compare them to the bit); with use_xla their sessions compile with XLA.

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
      session_config=precision.xla_session_config(None, options.use_xla),
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


# The files of a checkpoint, whose path is their common prefix (".../bert_model.ckpt").
_CHECKPOINT_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")


def check_init_checkpoint(init_checkpoint, bert_config=None):
  """Raises InputError unless --init_checkpoint is unset or names a checkpoint of the model.

  A checkpoint is named by the prefix of its files (".../bert_model.ckpt" for
  bert_model.ckpt.index and bert_model.ckpt.data-*), or by a folder whose "checkpoint" file
  names its latest one (an --output_dir), as `tf.train.init_from_checkpoint` takes them. A
  file of a checkpoint, or a folder without a "checkpoint" file (a Google release), gets the
  prefix to pass instead.

  With `bert_config`, the checkpoint must hold the BERT variables (bert/...) in the shapes the
  config gives them, where the original failed to initialise (other shapes) or silently trained
  from random weights (no variable found). Another number of encoder layers only gets a
  warning, as the original initialises the layers both have (a deliberate choice at times).
  """
  if not init_checkpoint:
    return
  if tf.io.gfile.isdir(init_checkpoint):
    if tf.train.latest_checkpoint(init_checkpoint):
      _check_init_checkpoint_fits(init_checkpoint, bert_config)
      return
    prefixes = sorted(name[:-len(".index")] for name in
                      tf.io.gfile.glob(os.path.join(init_checkpoint, "*.index")))
  elif tf.io.gfile.exists(init_checkpoint + ".index"):
    _check_init_checkpoint_fits(init_checkpoint, bert_config)
    return
  else:
    prefix = _CHECKPOINT_FILE_SUFFIX.sub("", init_checkpoint)
    prefixes = [prefix] if prefix != init_checkpoint and tf.io.gfile.exists(
        prefix + ".index") else []
  error = "--init_checkpoint: no checkpoint at %s" % init_checkpoint
  if prefixes:
    error += "; name a checkpoint by the prefix of its files, e.g. %s" % prefixes[0]
  raise script_io.InputError(error)


def _check_init_checkpoint_fits(init_checkpoint, bert_config):
  """Checks the variables of an existing --init_checkpoint against the config; see above."""
  if bert_config is None:
    return
  shapes = _checkpoint_shapes(init_checkpoint, "init_checkpoint")
  expected = _bert_shapes(bert_config)
  if not any(name in shapes for name in expected):
    raise script_io.InputError(
        "--init_checkpoint=%s holds no variable of a BERT model (no %s): the model would "
        "train from random weights; pass a BERT checkpoint" %
        (init_checkpoint, next(iter(expected))))
  difference = _shape_difference(shapes, expected, missing_ok=True)
  if difference:
    raise script_io.InputError(
        "--init_checkpoint=%s is a checkpoint of another model than --bert_config_file "
        "describes: %s; pass the bert_config.json that came with the checkpoint" %
        (init_checkpoint, difference))
  num_layers = _num_encoder_layers(shapes)
  if num_layers != bert_config.num_hidden_layers:
    tf.logging.warning(
        "--init_checkpoint=%s has %d encoder layers and the model %d: only the first %d are "
        "initialised from it", init_checkpoint, num_layers, bert_config.num_hidden_layers,
        min(num_layers, bert_config.num_hidden_layers))


def check_output_dir_checkpoint(output_dir, bert_config, head_shapes=None):
  """Raises InputError if --output_dir holds a checkpoint of another model than the config's.

  A run restores the latest checkpoint of its --output_dir (to resume training, or to evaluate
  and predict with it); one of another model fails to load there. Checked before any work.

  Args:
    output_dir: the folder (flag --output_dir); absent or without checkpoints is fine.
    bert_config: the `modeling.BertConfig` of the run.
    head_shapes: optional dict of the script's own variables -> their shapes, e.g.
      {"output_weights": [num_labels, hidden_size]}, which the checkpoint must hold too.
  """
  latest = tf.train.latest_checkpoint(output_dir) if tf.io.gfile.isdir(output_dir) else None
  if not latest:
    return
  shapes = _checkpoint_shapes(latest, "output_dir")
  # A run restores every variable of its graph, the global step too.
  expected = dict(_bert_shapes(bert_config), global_step=[], **(head_shapes or {}))
  difference = _shape_difference(shapes, expected, missing_ok=False)
  num_layers = _num_encoder_layers(shapes)
  if not difference and num_layers != bert_config.num_hidden_layers:
    difference = "%d encoder layers in the checkpoint but %d in --bert_config_file" % (
        num_layers, bert_config.num_hidden_layers)
  if difference:
    raise script_io.InputError(
        "--output_dir=%s holds a checkpoint of another model (%s: %s), which this run would "
        "load: choose another --output_dir, or delete the checkpoints in it (a model to start "
        "from is passed as --init_checkpoint)" %
        (output_dir, os.path.basename(latest), difference))


def _bert_shapes(bert_config):
  """The shapes the config gives the BERT variables that tell models apart, by name."""
  hidden_size = bert_config.hidden_size
  return {
      "bert/embeddings/word_embeddings": [bert_config.vocab_size, hidden_size],
      "bert/embeddings/token_type_embeddings": [bert_config.type_vocab_size, hidden_size],
      "bert/embeddings/position_embeddings": [bert_config.max_position_embeddings, hidden_size],
      "bert/encoder/layer_0/intermediate/dense/kernel": [hidden_size,
                                                         bert_config.intermediate_size],
  }


def _checkpoint_shapes(checkpoint, flag_name):
  """Returns the checkpoint's variables (of the flag --flag_name) as a dict of name -> shape."""
  try:
    return {name: list(shape) for name, shape in tf.train.list_variables(checkpoint)}
  except (tf.errors.OpError, ValueError) as error:
    raise script_io.InputError("--%s: cannot read the checkpoint %s: %s" % (
        flag_name, checkpoint, str(error).strip().splitlines()[0])) from None


def _shape_difference(shapes, expected, missing_ok):
  """Describes the first variable of `expected` that `shapes` lacks or has in another shape."""
  for name, shape in expected.items():
    if name not in shapes:
      if not missing_ok:
        return "it has no variable %s" % name
    elif shapes[name] != list(shape):
      return "%s is %s in the checkpoint but %s in this run" % (name, shapes[name],
                                                                 list(shape))
  return None


def _num_encoder_layers(shapes):
  """The number of encoder layers (bert/encoder/layer_N/...) among checkpoint variables."""
  layers = set()
  for name in shapes:
    match = re.match(r"bert/encoder/layer_(\d+)/", name)
    if match:
      layers.add(int(match.group(1)))
  return len(layers)


def init_from_checkpoint(init_checkpoint, use_tpu):
  """Initialises every trainable variable found in `init_checkpoint` and logs which.

  Args:
    init_checkpoint: checkpoint path, or None/"" to start from the initializers.
    use_tpu: on TPU the initialisation must happen inside a Scaffold.

  Returns:
    scaffold_fn for TPUEstimatorSpec, or None.

  Raises:
    script_io.InputError: the checkpoint holds none of the variables, so that the model would
      silently train or predict from random weights.
  """
  tvars = tf.trainable_variables()
  initialized_variable_names = {}
  scaffold_fn = None
  if init_checkpoint:
    assignment_map, initialized_variable_names = (
        modeling.get_assignment_map_from_checkpoint(tvars, init_checkpoint))
    if not assignment_map:
      raise script_io.InputError(
          "--init_checkpoint=%s holds none of the model's %d variables (such as %s): pass a "
          "checkpoint of this model" % (init_checkpoint, len(tvars), tvars[0].op.name))
    if use_tpu:

      def tpu_scaffold():
        tf.train.init_from_checkpoint(init_checkpoint, assignment_map)
        return tf.train.Scaffold()

      scaffold_fn = tpu_scaffold
    else:
      tf.train.init_from_checkpoint(init_checkpoint, assignment_map)

  tf.logging.info("**** Trainable Variables ****")
  for var in tvars:
    init_string = ", *INIT_FROM_CKPT*" if var.name in initialized_variable_names else ""
    tf.logging.info("  name = %s, shape = %s%s", var.name, var.shape, init_string)
  return scaffold_fn


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
