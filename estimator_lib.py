"""The Estimator plumbing the scripts share, written once.

The TPU flags, the RunConfig and TPUEstimator they describe, the BERT config checked against
the sequence length, TFRecord input pipelines and the check of their records, the check of
--init_checkpoint and the initialisation from it, and the eval results file.
`run_pretraining.py`, `run_classifier.py`, `run_squad.py` and `extract_features.py` build on it;
each keeps its own model_fn and flags.

Speed off TPU (`define_speed_flags`): mixed precision (--precision), XLA (--use_xla) and input
batches cut to their longest real sequence (`trim_to_longest_sequence`, `bucket_by_length`,
`batch_sorted_by_length`).

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


def define_speed_flags():
  """Defines --precision, --use_xla and --batch_by_length, once per process."""
  if "precision" in FLAGS:
    return
  flags.DEFINE_enum(
      "precision", "fp32", ["fp32", "bf16", "fp16"],
      "The precision of the encoder's matrix multiplications: fp32 (the original), bf16 "
      "(bfloat16: AMX/AVX512_BF16 CPUs, Ampere+ GPUs, TPUs) or fp16 (float16 with dynamic loss "
      "scaling: GPUs). Variables, checkpoints, layer norms, softmaxes and losses stay float32. "
      "On hardware without fast units for it, the run logs a warning and uses float32.")
  flags.DEFINE_bool(
      "use_xla", False,
      "Compile the graph with XLA (global_jit_level ON_1; on CPU only the element-wise work, "
      "unless TF_XLA_FLAGS is set). It pays in training; on CPU, predict without it.")
  flags.DEFINE_bool(
      "batch_by_length", False,
      "Off TPU: train on batches of examples of similar length, and evaluate and predict in "
      "batches sorted by length within windows (outputs come back in input order), so less "
      "padding is computed. The order in which training sees the examples changes.")


def compute_type_from_flags():
  """Returns the dtype the model computes in: --precision, or float32 where unsupported.

  On hardware without fast units for the precision asked for (`modeling.compute_type_support`),
  logs one warning and returns tf.float32. On TPU bfloat16 is native and not checked.
  """
  compute_type = modeling.get_compute_type(_flag_value("precision", "fp32"))
  if compute_type == tf.float32 or FLAGS.use_tpu:
    return compute_type
  supported, hardware = modeling.compute_type_support(compute_type)
  if not supported:
    tf.logging.warning("--precision=%s needs hardware this machine lacks (%s): running in "
                       "float32", FLAGS.precision, hardware)
    return tf.float32
  return compute_type


def mixed_precision_optimizer_options(compute_type):
  """`optimization.create_optimizer` keyword arguments for a model computing in `compute_type`.

  float16 needs dynamic loss scaling; in either half precision the fused, in-place Adam update
  is used, its rounding differences being far below those of the model's. float32 keeps the
  original's update.
  """
  return dict(loss_scaling=compute_type == tf.float16, fused=compute_type != tf.float32)


# TF_XLA_FLAGS for --use_xla on CPU: XLA fuses the element-wise work and leaves the matrix
# multiplications to oneDNN, whose bfloat16 kernels use AMX (XLA's own CPU ones do not).
CPU_XLA_FLAGS = "--tf_xla_cpu_global_jit --tf_xla_ops_to_cluster=FUSIBLE"


def configure_xla():
  """With --use_xla on a machine without a GPU, sets TF_XLA_FLAGS to CPU_XLA_FLAGS.

  TensorFlow reads TF_XLA_FLAGS once, when it first looks for devices (and without
  --tf_xla_cpu_global_jit, XLA compiles nothing on CPU), which absl's start-up already does:
  the scripts pass this to `script_io.run_main` as `before_start`. Flags the user set are left
  alone. Whether there is a GPU is judged from the NVIDIA driver, as TensorFlow cannot be asked
  yet.
  """
  if not _flag_value("use_xla", False) or "TF_XLA_FLAGS" in os.environ:
    return
  if not _nvidia_gpu_visible():
    os.environ["TF_XLA_FLAGS"] = CPU_XLA_FLAGS


def _nvidia_gpu_visible():
  """Whether the NVIDIA driver shows a GPU that CUDA_VISIBLE_DEVICES leaves visible."""
  if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
    return False
  gpus_dir = "/proc/driver/nvidia/gpus"
  return (os.path.isdir(gpus_dir) and bool(os.listdir(gpus_dir))) or os.path.exists("/dev/dxg")


def _speed_session_config(session_config):
  """Sets XLA on `session_config` (a tf.ConfigProto or None) if --use_xla; returns it."""
  if not _flag_value("use_xla", False):
    return session_config
  if (not tf.config.list_physical_devices("GPU") and
      "--tf_xla_cpu_global_jit" not in os.environ.get("TF_XLA_FLAGS", "")):
    tf.logging.warning(
        "--use_xla: XLA compiles nothing on a machine without GPU unless TF_XLA_FLAGS has "
        "--tf_xla_cpu_global_jit when TensorFlow starts (e.g. TF_XLA_FLAGS=\"%s\")",
        CPU_XLA_FLAGS)
  session_config = session_config or tf.ConfigProto(allow_soft_placement=True)
  session_config.graph_options.optimizer_options.global_jit_level = (
      tf.OptimizerOptions.ON_1)
  return session_config


def trims_padding():
  """Whether the input_fns cut batches to their longest sequence: off TPU (static shapes)."""
  return not FLAGS.use_tpu


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

  With --use_xla (`define_speed_flags`) the sessions of either compile with XLA.

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
      session_config=_speed_session_config(None),
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
      session_config=_speed_session_config(session_config),
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


def file_based_input_fn_builder(input_file, name_to_features, is_training, drop_remainder,
                                trim_padding=False, sequence_features=None):
  """Creates an `input_fn` reading one TFRecord file of fixed-length features.

  Training repeats and shuffles the records; evaluation and prediction read them once, in order.

  Args:
    input_file: path of the TFRecord file.
    name_to_features: dict of feature name -> `tf.FixedLenFeature`.
    is_training: whether to repeat and shuffle.
    drop_remainder: whether to drop a last, smaller batch (TPUs need fixed shapes).
    trim_padding: whether to cut each batch's per-position features to its longest real
      sequence (off TPU), with --batch_by_length grouping examples of similar length.
    sequence_features: names of the per-position features (default SEQUENCE_FEATURES).

  Returns:
    input_fn(params) -> `tf.data.Dataset` of feature dicts, batched by params["batch_size"];
    the per-position features are [batch_size, seq_length], or [batch_size, length <=
    seq_length] with trim_padding.
  """

  def input_fn(params):
    dataset = tf.data.TFRecordDataset(input_file)
    if is_training:
      dataset = dataset.repeat()
      dataset = dataset.shuffle(buffer_size=100)
    dataset = dataset.map(lambda record: decode_record(record, name_to_features))
    return batch_features(dataset, params["batch_size"], is_training, drop_remainder,
                          trim_padding, sequence_features)

  return input_fn


def batch_features(dataset, batch_size, is_training, drop_remainder, trim_padding,
                   sequence_features=None):
  """Batches a dataset of single examples as the scripts' input_fns do.

  Without trim_padding, plain batches of fixed shape (the original). With it, each batch is cut
  to its longest real sequence; with --batch_by_length too, training batches come from length
  buckets (`bucket_by_length`) and evaluation/prediction batches are sorted by length within
  windows (`batch_sorted_by_length`, carrying an "example_index" feature that
  `restore_input_order` uses).

  Args:
    dataset: `tf.data.Dataset` of feature dicts, per-position features [seq_length].
    batch_size: int.
    is_training: bool.
    drop_remainder: bool.
    trim_padding: bool.
    sequence_features: names of the per-position features (default SEQUENCE_FEATURES).

  Returns:
    `tf.data.Dataset` of batches.
  """
  sequence_features = sequence_features or SEQUENCE_FEATURES
  if not trim_padding:
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
  if _flag_value("batch_by_length", False):
    multiple = length_multiple(dataset.element_spec["input_mask"].shape[0])
    if is_training:
      return bucket_by_length(dataset, batch_size, multiple, drop_remainder, sequence_features)
    dataset = dataset.enumerate().map(
        lambda index, features: dict(features, example_index=index))
    return batch_sorted_by_length(dataset, batch_size, SORT_WINDOW_BATCHES, multiple,
                                  sequence_features)
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.map(
      lambda features: trim_to_longest_sequence(features, 1, sequence_features))


def restore_input_order(predictions):
  """Yields Estimator predictions in input order when --batch_by_length sorted them.

  Args:
    predictions: iterable of prediction dicts; with "example_index" (an int64 passed through
      by the model_fn) they are reordered and the key is dropped, else yielded as they come.
      Sorting is within windows of SORT_WINDOW_BATCHES batches, so few are held back.
  """
  pending = {}
  next_index = 0
  for prediction in predictions:
    if "example_index" not in prediction:
      yield prediction
      continue
    prediction = dict(prediction)
    pending[int(prediction.pop("example_index"))] = prediction
    while next_index in pending:
      yield pending.pop(next_index)
      next_index += 1
  for index in sorted(pending):
    yield pending[index]


# The features of one value per sequence position that the scripts write.
SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")

# --batch_by_length: the batches sorted together in evaluation and prediction.
SORT_WINDOW_BATCHES = 32


def length_multiple(seq_length):
  """--batch_by_length's bucket width and length rounding for examples of `seq_length`.

  8 positions, or seq_length / 16 for longer sequences: at most 16 batch shapes (XLA compiles
  each once) while a batch computes on average only a few positions of padding.
  """
  return max(8, seq_length // 16)


def trim_to_longest_sequence(features, length_multiple=1, sequence_features=SEQUENCE_FEATURES):
  """Cuts the per-position features of a batch to its longest real sequence.

  Padding is masked out of attention, so the outputs at real positions do not change. The
  length kept is the last position any example's `input_mask` marks real, plus one, rounded up
  to a multiple of `length_multiple` and at most the batch's `seq_length`.

  Args:
    features: dict of Tensors, as an input_fn yields them; those named in
      `sequence_features` (with "input_mask") are [batch_size, seq_length].
    length_multiple: positive int.
    sequence_features: names of the per-position features to cut.

  Returns:
    A new dict: the per-position features [batch_size, length], the others as they are.
  """
  input_mask = features["input_mask"]
  seq_length = tf.shape(input_mask)[1]
  positions_used = tf.reduce_any(tf.not_equal(input_mask, 0), axis=0)
  length = tf.reduce_max(tf.where(positions_used, tf.range(1, seq_length + 1),
                                  tf.zeros_like(positions_used, tf.int32)))
  length = tf.minimum((length + length_multiple - 1) // length_multiple * length_multiple,
                      seq_length)
  trimmed = dict(features)
  for name in sequence_features:
    if name in features:
      trimmed[name] = features[name][:, :length]
  return trimmed


def _real_length(features):
  """Returns the number of real tokens of one example (an int32 scalar)."""
  return tf.reduce_sum(tf.cast(tf.not_equal(features["input_mask"], 0), tf.int32))


def bucket_by_length(dataset, batch_size, bucket_width, drop_remainder,
                     sequence_features=SEQUENCE_FEATURES):
  """Batches examples whose lengths fall in the same bucket of `bucket_width` positions.

  Examples of real length in (k * bucket_width, (k + 1) * bucket_width] wait in bucket k until
  `batch_size` of them are there; each batch is trimmed to at most the bucket's upper bound, so
  there are at most seq_length / bucket_width distinct shapes. The order of examples changes,
  not what each batch computes per example.

  Args:
    dataset: `tf.data.Dataset` of single examples (dicts with "input_mask" of [seq_length]).
    batch_size: int.
    bucket_width: positive int.
    drop_remainder: bool, whether to drop each bucket's last, partial batch.
    sequence_features: names of the per-position features to cut.

  Returns:
    `tf.data.Dataset` of batches, per-position features [batch_size, length].
  """
  def bucket_of(features):
    return tf.cast((_real_length(features) - 1) // bucket_width, tf.int64)

  dataset = dataset.group_by_window(
      key_func=bucket_of,
      reduce_func=lambda _, window: window.batch(batch_size, drop_remainder=drop_remainder),
      window_size=batch_size)
  return dataset.map(
      lambda features: trim_to_longest_sequence(features, bucket_width, sequence_features))


def batch_sorted_by_length(dataset, batch_size, window_batches, length_multiple,
                           sequence_features=SEQUENCE_FEATURES):
  """Batches examples sorted by length within windows of `window_batches` batches.

  Every `window_batches * batch_size` consecutive examples are sorted by real length, cut into
  batches and trimmed, so the examples of a batch are of similar length while each example
  stays within its window: carry an index feature to restore the input order.

  Args:
    dataset: `tf.data.Dataset` of single examples (dicts with "input_mask" of [seq_length]).
    batch_size: int.
    window_batches: int, batches per sorted window.
    length_multiple: positive int, see `trim_to_longest_sequence`.
    sequence_features: names of the per-position features to cut.

  Returns:
    `tf.data.Dataset` of batches, per-position features [batch_size, length]; the last batch
    of the last window may be smaller.
  """
  def sort_window(features):
    lengths = tf.reduce_sum(tf.cast(tf.not_equal(features["input_mask"], 0), tf.int32), axis=1)
    order = tf.argsort(lengths, stable=True)
    return {name: tf.gather(value, order) for name, value in features.items()}

  dataset = dataset.batch(window_batches * batch_size).map(sort_window).unbatch()
  dataset = dataset.batch(batch_size)
  return dataset.map(
      lambda features: trim_to_longest_sequence(features, length_multiple, sequence_features))


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
