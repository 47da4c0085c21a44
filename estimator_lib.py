"""The Estimator plumbing the scripts share, written once.

The TPU flags, the RunConfig and TPUEstimator they describe, the BERT config checked against
the sequence length, TFRecord input pipelines and the check of their records, the check of
--init_checkpoint and the initialisation from it, and the eval results file.
`run_pretraining.py`, `run_classifier.py`, `run_squad.py` and `extract_features.py` build on it;
each keeps its own model_fn and flags.

Training on several GPUs or machines, or in micro-batches (`define_scale_flags`), is also here:
with --distribution_strategy, `make_estimator` runs the same TPUEstimator model_fn in a plain
Estimator under a `tf.distribute` strategy, and `train` starts it the way the strategy needs.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import json
import os
import re

from absl import flags
from google.protobuf import message
import modeling
import script_io
import tensorflow.compat.v1 as tf

FLAGS = flags.FLAGS


def define_tpu_flags():
  """Defines the TPU flags of the original scripts, with their defaults, once per process."""
  if "use_tpu" in FLAGS:
    return
  flags.DEFINE_bool("use_tpu", False, "Whether to use TPU or GPU/CPU.")
  flags.DEFINE_string(
      "tpu_name", None,
      "The Cloud TPU to use for training. This should be either the name used when creating "
      "the Cloud TPU, or a grpc://ip.address.of.tpu:8470 url.")
  flags.DEFINE_string(
      "tpu_zone", None,
      "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will "
      "attempt to automatically detect it from metadata.")
  flags.DEFINE_string(
      "gcp_project", None,
      "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we will "
      "attempt to automatically detect it from metadata.")
  flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL.")
  flags.DEFINE_integer(
      "num_tpu_cores", 8,
      "Only used if `use_tpu` is True. Total number of TPU cores to use.")


def load_bert_config(bert_config_file, max_seq_length):
  """Reads a BERT config file and checks that `max_seq_length` fits the model.

  Args:
    bert_config_file: path of a bert_config.json (flag --bert_config_file).
    max_seq_length: the sequence length the script will feed (flag --max_seq_length).

  Returns:
    A `modeling.BertConfig`.

  Raises:
    script_io.InputError: missing or malformed file, or a sequence longer than the model's
      position embeddings.
  """
  script_io.require_file(bert_config_file, "bert_config_file")
  try:
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  except (ValueError, TypeError) as error:
    raise script_io.InputError(
        "--bert_config_file: %s is not a BERT config: %s" % (bert_config_file, error))
  if max_seq_length > bert_config.max_position_embeddings:
    raise script_io.InputError(
        "--max_seq_length=%d is longer than the model allows: %s has "
        "max_position_embeddings=%d" %
        (max_seq_length, bert_config_file, bert_config.max_position_embeddings))
  return bert_config


DISTRIBUTION_STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")


def define_scale_flags():
  """Defines the flags for several devices, machines and micro-batches, once per process."""
  if "distribution_strategy" in FLAGS:
    return
  flags.DEFINE_enum(
      "distribution_strategy", "none", list(DISTRIBUTION_STRATEGIES),
      "How to spread training over devices when not --use_tpu: none (one device, the "
      "original's TPUEstimator), mirrored (the GPUs of this machine) or multi_worker_mirrored "
      "(the GPUs of several machines listed in the TF_CONFIG environment variable). "
      "Evaluation and prediction run on one device.")
  flags.DEFINE_integer(
      "num_gpus", None,
      "Only used with --distribution_strategy=mirrored: the number of GPUs to train on (the "
      "first ones). Default: all visible GPUs, or the CPU when there is none.")
  flags.DEFINE_integer(
      "gradient_accumulation_steps", 1,
      "Split each batch of --train_batch_size examples into this many micro-batches, run one "
      "after the other, and update the model once with their summed gradients. Steps "
      "(--num_train_steps, --num_warmup_steps, --save_checkpoints_steps) count updates.")


def micro_batch_size(train_batch_size, gradient_accumulation_steps):
  """Returns the number of examples of one micro-batch: train_batch_size / accumulation steps.

  Raises:
    script_io.InputError: if gradient_accumulation_steps is not positive or does not divide
      train_batch_size.
  """
  if gradient_accumulation_steps < 1:
    raise script_io.InputError(
        "--gradient_accumulation_steps=%d: must be 1 or more" % gradient_accumulation_steps)
  if train_batch_size % gradient_accumulation_steps:
    raise script_io.InputError(
        "--train_batch_size=%d cannot be split into --gradient_accumulation_steps=%d "
        "micro-batches of equal size: choose a divisor" %
        (train_batch_size, gradient_accumulation_steps))
  return train_batch_size // gradient_accumulation_steps


def check_scale_flags(train_batch_size, other_work):
  """Checks the flags of `define_scale_flags` before a script reads or converts any data.

  Args:
    train_batch_size: --train_batch_size, which --gradient_accumulation_steps must divide.
    other_work: dict of the script's flags for more than training -> their values, e.g.
      {"--do_eval": True, "--export_dir": None}; those set are refused by multi-worker runs.

  Raises:
    script_io.InputError: the batch does not split into micro-batches of equal size, or a
      multi-worker run is asked for more than training (each worker would evaluate, predict
      or export while the chief may still be writing the last checkpoint).
  """
  micro_batch_size(train_batch_size, FLAGS.gradient_accumulation_steps)
  given = [flag for flag, value in other_work.items() if value]
  if FLAGS.distribution_strategy == "multi_worker_mirrored" and given:
    raise script_io.InputError(
        "--distribution_strategy=multi_worker_mirrored only trains: leave out %s, and "
        "evaluate, predict or export afterwards in a run with --distribution_strategy=none on "
        "the same --output_dir" % " and ".join(given))


def make_estimator(model_fn, output_dir, train_batch_size=None, eval_batch_size=None,
                   predict_batch_size=None, save_checkpoints_steps=None,
                   iterations_per_loop=1000):
  """Builds the Estimator that trains, evaluates and predicts with a TPUEstimator `model_fn`.

  With --use_tpu or --distribution_strategy=none (the default), this is the TPUEstimator the
  original scripts use; it runs on CPU/GPU when not --use_tpu. With another strategy it is a
  plain Estimator that trains under that `tf.distribute` strategy (see `define_scale_flags`);
  its evaluation and prediction run on one device, so every example counts once.

  With --gradient_accumulation_steps=N the input_fn gives micro-batches of train_batch_size / N
  examples (divided again among the replicas of a strategy); the model_fn must pass N to
  `optimization.create_optimizer`.

  Args:
    model_fn: a TPUEstimator model_fn (features, labels, mode, params).
    output_dir: where checkpoints and summaries go; training resumes from its latest checkpoint.
    train_batch_size, eval_batch_size, predict_batch_size: global batch sizes.
    save_checkpoints_steps: save a checkpoint every so many steps, and at the end of training;
      None saves none at all (for runs that only predict from an init_checkpoint).
    iterations_per_loop: steps per TPU loop (and per Estimator log line off TPU).

  Returns:
    A `tf.estimator.tpu.TPUEstimator`, or a `DistributedEstimator` under a strategy; both
    train(input_fn=..., max_steps=...), evaluate(input_fn=..., steps=...) and predict(input_fn).

  Raises:
    script_io.InputError: the scale flags do not fit each other, the batch size or TF_CONFIG.
  """
  strategy_name = _flag_value("distribution_strategy", "none")
  accumulation_steps = _flag_value("gradient_accumulation_steps", 1)
  if FLAGS.use_tpu and strategy_name != "none":
    raise script_io.InputError(
        "--use_tpu trains on TPU cores with TPUEstimator; --distribution_strategy=%s is for "
        "GPUs and CPUs: leave it at none" % strategy_name)
  if FLAGS.use_tpu and accumulation_steps != 1:
    raise script_io.InputError(
        "--gradient_accumulation_steps=%d: gradient accumulation is not supported with "
        "--use_tpu; use more TPU cores (--num_tpu_cores) for a larger batch" %
        accumulation_steps)
  if train_batch_size is not None:
    train_batch_size = micro_batch_size(train_batch_size, accumulation_steps)

  if strategy_name != "none":
    return _make_distributed_estimator(model_fn, output_dir, strategy_name, train_batch_size,
                                       eval_batch_size, predict_batch_size,
                                       save_checkpoints_steps)

  tpu_cluster_resolver = None
  if FLAGS.use_tpu and FLAGS.tpu_name:
    tpu_cluster_resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        FLAGS.tpu_name, zone=FLAGS.tpu_zone, project=FLAGS.gcp_project)
  run_config = tf.estimator.tpu.RunConfig(
      cluster=tpu_cluster_resolver,
      master=FLAGS.master,
      model_dir=output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      tpu_config=tf.estimator.tpu.TPUConfig(
          iterations_per_loop=iterations_per_loop,
          num_shards=FLAGS.num_tpu_cores,
          per_host_input_for_training=tf.estimator.tpu.InputPipelineConfig.PER_HOST_V2))
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=FLAGS.use_tpu,
      model_fn=model_fn,
      config=run_config,
      train_batch_size=train_batch_size,
      eval_batch_size=eval_batch_size,
      predict_batch_size=predict_batch_size)


def _flag_value(name, default):
  """The value of a flag of `define_scale_flags`, or `default` in a script that has none."""
  return FLAGS[name].value if name in FLAGS else default


def _make_distributed_estimator(model_fn, output_dir, strategy_name, train_batch_size,
                                eval_batch_size, predict_batch_size, save_checkpoints_steps):
  """Builds the plain Estimator that trains `model_fn` under the named tf.distribute strategy."""
  num_gpus = _flag_value("num_gpus", None)
  if strategy_name == "mirrored":
    strategy = tf.distribute.MirroredStrategy(devices=_mirrored_devices(num_gpus))
  else:
    if num_gpus is not None:
      raise script_io.InputError(
          "--num_gpus is only for --distribution_strategy=mirrored; each worker of "
          "multi_worker_mirrored trains on all its visible GPUs (set CUDA_VISIBLE_DEVICES)")
    _check_tf_config()
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()

  num_replicas = strategy.num_replicas_in_sync
  if train_batch_size is not None and train_batch_size % num_replicas:
    raise script_io.InputError(
        "--train_batch_size: micro-batches of %d examples cannot be shared evenly by the %d "
        "replicas of --distribution_strategy=%s" %
        (train_batch_size, num_replicas, strategy_name))

  num_cpus = len(tf.config.list_logical_devices("CPU"))
  session_config = tf.ConfigProto(
      allow_soft_placement=True,
      device_count={"CPU": num_cpus},
      # An all-reduce holds inter-op threads while it waits for every replica; with the default
      # of one thread per core, two replicas on a 2-core machine deadlocked.
      inter_op_parallelism_threads=max(os.cpu_count() or 1, 8 * num_replicas))
  run_config = tf.estimator.RunConfig(
      model_dir=output_dir,
      save_checkpoints_steps=save_checkpoints_steps,
      session_config=session_config,
      train_distribute=strategy)
  return DistributedEstimator(
      model_fn, run_config,
      train_batch_size=None if train_batch_size is None else train_batch_size // num_replicas,
      eval_batch_size=eval_batch_size,
      predict_batch_size=predict_batch_size)


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


class DistributedEstimator(object):
  """Trains a TPUEstimator model_fn under a tf.distribute strategy; evaluates on one device.

  A plain `tf.estimator.Estimator` takes the model_fn (its TPUEstimatorSpec converted) and the
  RunConfig with the strategy. `train`, `evaluate` and `predict` are TPUEstimator's: each
  input_fn(params) gets params["batch_size"] as TPUEstimator would give it, which a plain
  Estimator does not. For training that is one replica's share of a micro-batch (each replica
  reads batches of its own; each worker of a multi-worker strategy reads the whole input and
  keeps every k-th batch, k workers in all). Evaluation and prediction run on one device with
  the whole eval or predict batch, so every example counts once, as on one device.

  Attributes:
    estimator: the `tf.estimator.Estimator`.
  """

  def __init__(self, model_fn, config, train_batch_size, eval_batch_size, predict_batch_size):
    # params={} only silences the Estimator's warning that the model_fn takes params.
    self.estimator = tf.estimator.Estimator(
        model_fn=_estimator_model_fn(model_fn), config=config, params={})
    self._train_batch_size = train_batch_size
    self._eval_batch_size = eval_batch_size
    self._predict_batch_size = predict_batch_size

  @property
  def config(self):
    return self.estimator.config

  @property
  def model_dir(self):
    return self.estimator.model_dir

  def train(self, input_fn, max_steps=None):
    """Trains until the global step (which counts updates) reaches max_steps.

    `Estimator.train` refuses a multi-worker strategy; there `train_and_evaluate` trains this
    worker in step with the others of the TF_CONFIG cluster and returns when all reach
    max_steps. Its EvalSpec is never used: the cluster has no "evaluator" task. Only the chief
    writes checkpoints.
    """
    input_fn = _batched_input_fn(input_fn, self._train_batch_size)
    if self.config.train_distribute.extended.experimental_between_graph:
      tf.estimator.train_and_evaluate(
          self.estimator,
          tf.estimator.TrainSpec(input_fn=input_fn, max_steps=max_steps),
          tf.estimator.EvalSpec(input_fn=input_fn))
    else:
      self.estimator.train(input_fn=input_fn, max_steps=max_steps)
    return self

  def evaluate(self, input_fn, **kwargs):
    """`Estimator.evaluate` on one device, batches of eval_batch_size examples."""
    self._check_single_worker("evaluate")
    return self.estimator.evaluate(_batched_input_fn(input_fn, self._eval_batch_size), **kwargs)

  def predict(self, input_fn, **kwargs):
    """`Estimator.predict` on one device, batches of predict_batch_size examples."""
    self._check_single_worker("predict")
    return self.estimator.predict(
        _batched_input_fn(input_fn, self._predict_batch_size), **kwargs)

  def _check_single_worker(self, action):
    # A worker that is not the chief could read the checkpoint before the chief has written the
    # last one, or not see it at all when the output directory is not shared.
    if self.config.train_distribute.extended.experimental_between_graph:
      raise script_io.InputError(
          "--distribution_strategy=multi_worker_mirrored only trains: %s in a separate run "
          "with --distribution_strategy=none on the same --output_dir" % action)


def _estimator_model_fn(model_fn):
  """Wraps a TPUEstimator model_fn into one that returns a plain `EstimatorSpec`."""

  def estimator_model_fn(features, labels, mode, params):
    spec = model_fn(features, labels, mode, params)
    if isinstance(spec, tf.estimator.tpu.TPUEstimatorSpec):
      spec = spec.as_estimator_spec()
    return spec

  return estimator_model_fn


def _batched_input_fn(input_fn, batch_size):
  """Wraps input_fn(params) to get params["batch_size"] and one worker's share of the batches."""

  def batched_input_fn(params, input_context=None):
    dataset = input_fn(dict(params, batch_size=batch_size))
    if input_context is not None and input_context.num_input_pipelines > 1:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    return dataset

  return batched_input_fn


def decode_record(record, name_to_features):
  """Parses one serialized tf.train.Example; int64 features become int32, as TPUs need."""
  example = tf.parse_single_example(record, name_to_features)
  for name in list(example.keys()):
    if example[name].dtype == tf.int64:
      example[name] = tf.cast(example[name], tf.int32)
  return example


def file_based_input_fn_builder(input_file, name_to_features, is_training, drop_remainder):
  """Creates an `input_fn` reading one TFRecord file of fixed-length features.

  Training repeats and shuffles the records; evaluation and prediction read them once, in order.

  Args:
    input_file: path of the TFRecord file.
    name_to_features: dict of feature name -> `tf.FixedLenFeature`.
    is_training: whether to repeat and shuffle.
    drop_remainder: whether to drop a last, smaller batch (TPUs need fixed shapes).

  Returns:
    input_fn(params) -> `tf.data.Dataset` of feature dicts, batched by params["batch_size"].
  """

  def input_fn(params):
    dataset = tf.data.TFRecordDataset(input_file)
    if is_training:
      dataset = dataset.repeat()
      dataset = dataset.shuffle(buffer_size=100)
    dataset = dataset.map(lambda record: decode_record(record, name_to_features))
    return dataset.batch(params["batch_size"], drop_remainder=drop_remainder)

  return input_fn


def check_record_lengths(input_file, expected_lengths):
  """Checks the first record of a TFRecord file against the lengths the flags promise.

  An empty file is refused too: it has nothing to train or evaluate on, and a training input of
  empty files only would make the repeating input pipeline wait forever.

  Args:
    input_file: path of a TFRecord file of tf.train.Example.
    expected_lengths: dict of feature name -> (length, flag name), e.g.
      {"input_ids": (128, "max_seq_length")}.

  Raises:
    script_io.InputError: the file is not a TFRecord file of tf.train.Example, holds no record,
      or a feature is missing or has another length.
  """
  try:
    serialized = next(iter(tf.io.tf_record_iterator(input_file)), None)
    example = None if serialized is None else tf.train.Example.FromString(serialized)
  except (tf.errors.DataLossError, message.DecodeError):
    raise script_io.InputError(
        "%s is not a TFRecord file of tf.train.Example records" % input_file) from None
  except tf.errors.OpError as error:
    raise script_io.InputError("cannot read %s: %s" % (input_file, error.message)) from None
  if example is None:
    raise script_io.InputError("%s holds no records" % input_file)
  for name, (length, flag_name) in sorted(expected_lengths.items()):
    feature = example.features.feature.get(name)
    if feature is None:
      raise script_io.InputError("%s: records have no feature %r" % (input_file, name))
    actual = len(feature.int64_list.value) + len(feature.float_list.value)
    if actual != length:
      raise script_io.InputError(
          "%s: records hold %s of length %d but --%s=%d" %
          (input_file, name, actual, flag_name, length))


# The files of a checkpoint, whose path is their common prefix (".../bert_model.ckpt").
_CHECKPOINT_FILE_SUFFIX = re.compile(r"\.(index|meta|data-\d+-of-\d+)$")


def check_init_checkpoint(init_checkpoint):
  """Raises InputError unless --init_checkpoint is unset or names a checkpoint.

  A checkpoint is named by the prefix of its files (".../bert_model.ckpt" for
  bert_model.ckpt.index and bert_model.ckpt.data-*), or by a folder whose "checkpoint" file
  names its latest one (an --output_dir), as `tf.train.init_from_checkpoint` takes them. A
  file of a checkpoint, or a folder without a "checkpoint" file (a Google release), gets the
  prefix to pass instead.
  """
  if not init_checkpoint:
    return
  if tf.io.gfile.isdir(init_checkpoint):
    if tf.train.latest_checkpoint(init_checkpoint):
      return
    prefixes = sorted(name[:-len(".index")] for name in
                      tf.io.gfile.glob(os.path.join(init_checkpoint, "*.index")))
  elif tf.io.gfile.exists(init_checkpoint + ".index"):
    return
  else:
    prefix = _CHECKPOINT_FILE_SUFFIX.sub("", init_checkpoint)
    prefixes = [prefix] if prefix != init_checkpoint and tf.io.gfile.exists(
        prefix + ".index") else []
  error = "--init_checkpoint: no checkpoint at %s" % init_checkpoint
  if prefixes:
    error += "; name a checkpoint by the prefix of its files, e.g. %s" % prefixes[0]
  raise script_io.InputError(error)


def init_from_checkpoint(init_checkpoint, use_tpu):
  """Initialises every trainable variable found in `init_checkpoint` and logs which.

  Args:
    init_checkpoint: checkpoint path, or None/"" to start from the initializers.
    use_tpu: on TPU the initialisation must happen inside a Scaffold.

  Returns:
    scaffold_fn for TPUEstimatorSpec, or None.
  """
  tvars = tf.trainable_variables()
  initialized_variable_names = {}
  scaffold_fn = None
  if init_checkpoint:
    assignment_map, initialized_variable_names = (
        modeling.get_assignment_map_from_checkpoint(tvars, init_checkpoint))
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


def write_eval_results(output_eval_file, result):
  """Writes Estimator eval results as sorted `key = value` lines and logs them."""
  with script_io.atomic_open(output_eval_file) as writer:
    tf.logging.info("***** Eval results *****")
    for key in sorted(result.keys()):
      tf.logging.info("  %s = %s", key, str(result[key]))
      writer.write("%s = %s\n" % (key, str(result[key])))
