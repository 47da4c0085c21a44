"""The Estimator plumbing the scripts share, written once.

The TPU flags, the RunConfig and TPUEstimator they describe, the BERT config checked against
the sequence length, TFRecord input pipelines, checkpoint initialisation and the eval results
file. `run_pretraining.py`, `run_classifier.py`, `run_squad.py` and `extract_features.py` build
on it; each keeps its own model_fn and flags.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

from absl import flags
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


def make_estimator(model_fn, output_dir, train_batch_size=None, eval_batch_size=None,
                   predict_batch_size=None, save_checkpoints_steps=None,
                   iterations_per_loop=1000):
  """Builds the TPUEstimator the original scripts use; it runs on CPU/GPU when not --use_tpu.

  Args:
    model_fn: a TPUEstimator model_fn (features, labels, mode, params).
    output_dir: where checkpoints and summaries go; training resumes from its latest checkpoint.
    train_batch_size, eval_batch_size, predict_batch_size: global batch sizes.
    save_checkpoints_steps: how often to save a checkpoint (None: the Estimator's default).
    iterations_per_loop: steps per TPU loop (and per Estimator log line off TPU).

  Returns:
    A `tf.estimator.tpu.TPUEstimator`.
  """
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

  Args:
    input_file: path of a TFRecord file of tf.train.Example.
    expected_lengths: dict of feature name -> (length, flag name), e.g.
      {"input_ids": (128, "max_seq_length")}.

  Raises:
    script_io.InputError: a feature is missing or has another length.
  """
  for serialized in tf.io.tf_record_iterator(input_file):
    example = tf.train.Example.FromString(serialized)
    for name, (length, flag_name) in sorted(expected_lengths.items()):
      feature = example.features.feature.get(name)
      if feature is None:
        raise script_io.InputError("%s: records have no feature %r" % (input_file, name))
      actual = len(feature.int64_list.value) + len(feature.float_list.value)
      if actual != length:
        raise script_io.InputError(
            "%s: records hold %s of length %d but --%s=%d" %
            (input_file, name, actual, flag_name, length))
    return


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
