"""The tf.data input pipeline the scripts share: TFRecord decoding, batching, and less padding.

`file_based_input_fn_builder` reads a TFRecord file of fixed-length features, as the original
scripts' input_fns did; `batch_features` batches examples the way every script does. Off TPU,
batches can be cut to their longest real sequence (`trim_to_longest_sequence`), and with
--batch_by_length made of examples of similar length (`bucket_by_length` for training,
`batch_sorted_by_length` for evaluation and prediction, whose outputs `restore_input_order`
puts back in input order). `check_record_lengths` checks a TFRecord file against the lengths
the flags promise, and `naming_corrupt_files` names the file of a corrupt or truncated record.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import contextlib
import re

from google.protobuf import message
import script_io
import tensorflow.compat.v1 as tf


def decode_record(record, name_to_features):
  """Parses one serialized tf.train.Example; int64 features become int32, as TPUs need."""
  example = tf.parse_single_example(record, name_to_features)
  for name in list(example.keys()):
    if example[name].dtype == tf.int64:
      example[name] = tf.cast(example[name], tf.int32)
  return example


def file_based_input_fn_builder(input_file, name_to_features, is_training, drop_remainder,
                                trim_padding=False, batch_by_length=False,
                                sequence_features=None):
  """Creates an `input_fn` reading one TFRecord file of fixed-length features.

  Training repeats and shuffles the records; evaluation and prediction read them once, in order.

  Args:
    input_file: path of the TFRecord file.
    name_to_features: dict of feature name -> `tf.FixedLenFeature`.
    is_training: whether to repeat and shuffle.
    drop_remainder: whether to drop a last, smaller batch (TPUs need fixed shapes).
    trim_padding: whether to cut each batch's per-position features to its longest real
      sequence (off TPU).
    batch_by_length: with trim_padding, whether to batch examples of similar length
      (--batch_by_length, see `batch_features`).
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
                          trim_padding, batch_by_length, sequence_features)

  return input_fn


def batch_features(dataset, batch_size, is_training, drop_remainder, trim_padding,
                   batch_by_length=False, sequence_features=None):
  """Batches a dataset of single examples as the scripts' input_fns do.

  Without trim_padding, plain batches of fixed shape (the original). With it, each batch is cut
  to its longest real sequence; with batch_by_length too, training batches come from length
  buckets (`bucket_by_length`) and evaluation/prediction batches are sorted by length within
  windows (`batch_sorted_by_length`, carrying an "example_index" feature that
  `restore_input_order` uses).

  Args:
    dataset: `tf.data.Dataset` of feature dicts, per-position features [seq_length].
    batch_size: int.
    is_training: bool.
    drop_remainder: bool.
    trim_padding: bool, off TPU only (TPUs need static shapes).
    batch_by_length: bool (flag --batch_by_length); used only with trim_padding.
    sequence_features: names of the per-position features (default SEQUENCE_FEATURES).

  Returns:
    `tf.data.Dataset` of batches.
  """
  sequence_features = sequence_features or SEQUENCE_FEATURES
  if not trim_padding:
    return dataset.batch(batch_size, drop_remainder=drop_remainder)
  if batch_by_length:
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
  """Yields Estimator predictions in input order when batch_by_length sorted them.

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

# batch_by_length: the batches sorted together in evaluation and prediction.
SORT_WINDOW_BATCHES = 32


def length_multiple(seq_length):
  """The bucket width and length rounding of batch_by_length for examples of `seq_length`.

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


def check_record_lengths(input_file, expected_lengths, vocab_size=None, id_features=()):
  """Checks the first record of a TFRecord file against the lengths the flags promise.

  An empty file passes: the caller decides (a training input of empty files only would make
  the repeating input pipeline wait forever, one empty shard among others is harmless). With
  `vocab_size`, the token ids of the record must be below it: records made with a larger
  vocabulary than the model's fail in the first step on CPU, and read zeros silently on GPU
  and TPU.

  Args:
    input_file: path of a TFRecord file of tf.train.Example.
    expected_lengths: dict of feature name -> (length, flag name), e.g.
      {"input_ids": (128, "max_seq_length")}.
    vocab_size: optional, the model's vocab_size (from --bert_config_file).
    id_features: the names of the features that hold token ids, e.g. ("input_ids",).

  Returns:
    Whether the file holds a record.

  Raises:
    script_io.InputError: the file is not a TFRecord file of tf.train.Example, or a feature is
      missing or has another length, or a token id is vocab_size or more.
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
    return False
  for name, (length, flag_name) in sorted(expected_lengths.items()):
    feature = example.features.feature.get(name)
    if feature is None:
      raise script_io.InputError("%s: records have no feature %r" % (input_file, name))
    actual = len(feature.int64_list.value) + len(feature.float_list.value)
    if actual != length:
      raise script_io.InputError(
          "%s: records hold %s of length %d but --%s=%d" %
          (input_file, name, actual, flag_name, length))
  for name in id_features if vocab_size is not None else ():
    feature = example.features.feature.get(name)
    ids = feature.int64_list.value if feature is not None else []
    if ids and max(ids) >= vocab_size:
      raise script_io.InputError(
          "%s: records hold %s up to %d but --bert_config_file has vocab_size=%d: make the "
          "records with the vocab.txt of the model, or pass the bert_config.json of their "
          "vocabulary" % (input_file, name, max(ids), vocab_size))
  return True


@contextlib.contextmanager
def naming_corrupt_files(input_files):
  """Turns a DataLossError in the block into an InputError naming the corrupt input file.

  TensorFlow's error for a corrupt or truncated record names no file; on one, the files are
  read again from the start to find it.

  Args:
    input_files: the TFRecord files the block reads.

  Raises:
    script_io.InputError: naming the first of `input_files` with a corrupt or truncated record.
  """
  try:
    yield
  except tf.errors.DataLossError as error:
    for input_file in input_files:
      try:
        for _ in tf.io.tf_record_iterator(input_file):
          pass
      except tf.errors.DataLossError as file_error:
        # "truncated record at 299624' failed with Read less bytes than requested"
        reason = re.sub(r"'? failed with ", ": ", file_error.message.strip().splitlines()[0])
        raise script_io.InputError(
            "%s is corrupt or truncated (%s): write it again, or leave it out of the input" %
            (input_file, reason)) from error
    raise
