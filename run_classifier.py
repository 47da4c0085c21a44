"""Fine-tunes BERT for sentence and sentence-pair classification: GLUE, XNLI and your own tasks.

Each task's data processor reads its TSV files into `InputExample`s; those become fixed-length
features ([CLS] A [SEP] B [SEP], segment ids, mask) written to TFRecord files in --output_dir,
which a TPUEstimator trains on (--do_train), evaluates on the dev set (--do_eval, writing
eval_results.txt) and runs on the test set (--do_predict, writing test_results.tsv). The
classifier head keeps the original variable names, `output_weights` and `output_bias`.

STS-B is a regression task: the head has one output trained with mean squared error, and the
dev set is scored by Pearson and Spearman correlation.

With --export_dir the model is also written as a SavedModel (see serving.py), which
TensorFlow Serving or `ClassifierPredictor` serves.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import csv
import itertools
import math
import model_checks
import os

from absl import flags
import estimator_setup
import flag_groups
import input_pipeline
import modeling
import numpy as np
import optimization
import precision
import runner
import script_io
import serving
import tensorflow.compat.v1 as tf
import tf_example
import tokenization
import training_guard

flags.DEFINE_string(
    "data_dir", None,
    "The input data dir. Should contain the .tsv files (or other data files) for the task.")

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")

flags.DEFINE_string("task_name", None, "The name of the task to train.")

flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased models and False for "
    "cased models.")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. Sequences longer "
    "than this will be truncated, and sequences shorter than this will be padded.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_bool(
    "do_predict", False, "Whether to run the model in inference mode on the test set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_float("num_train_epochs", 3.0, "Total number of training epochs to perform.")

flags.DEFINE_float(
    "warmup_proportion", 0.1,
    "Proportion of training to perform linear learning rate warmup for. "
    "E.g., 0.1 = 10% of training.")

flags.DEFINE_integer("save_checkpoints_steps", 1000, "How often to save the model checkpoint.")

flags.DEFINE_integer("iterations_per_loop", 1000, "How many steps to make in each estimator call.")

flag_groups.define_tpu_flags()
flag_groups.define_scale_flags()
flag_groups.define_speed_flags()
serving.define_export_flag()

FLAGS = flags.FLAGS


class InputExample(object):
  """A single training/test example for simple sequence classification."""

  def __init__(self, guid, text_a, text_b=None, label=None):
    """Constructs an InputExample.

    Args:
      guid: unique id for the example, e.g. "dev-12".
      text_a: string, the untokenized text of the first sequence (the only one for single
        sentence tasks).
      text_b: optional string, the untokenized text of the second sequence of a pair.
      label: optional string, the label of the example (a number as a string for regression).
        Train and dev examples need one; test examples get a placeholder.
    """
    self.guid = guid
    self.text_a = text_a
    self.text_b = text_b
    self.label = label


class PaddingInputExample(object):
  """A fake example that fills the last batch up to the batch size.

  TPUs need every batch to have the same size. Dropping the last, smaller batch would lose
  predictions, so eval and predict sets are padded with these instead; they become all-zero
  features with is_real_example=False, which the metrics weigh zero and the predictions skip.
  """


class InputFeatures(object):
  """A single set of features of data: what the model reads for one example."""

  def __init__(self, input_ids, input_mask, segment_ids, label_id, is_real_example=True):
    self.input_ids = input_ids
    self.input_mask = input_mask
    self.segment_ids = segment_ids
    self.label_id = label_id
    self.is_real_example = is_real_example


class _TsvRow(list):
  """The columns of one TSV line; `location` names its file and line for error messages."""

  def __init__(self, columns, location):
    super(_TsvRow, self).__init__(columns)
    self.location = location


def _require_columns(row, num_columns):
  """Raises InputError unless `row` (a `_TsvRow`) has at least `num_columns` columns."""
  if len(row) < num_columns:
    raise script_io.InputError(
        "%s: expected at least %d tab-separated columns, found %d" %
        (row.location, num_columns, len(row)))


class DataProcessor(object):
  """Base class for data converters for sequence classification data sets."""

  def get_train_examples(self, data_dir):
    """Gets a collection of `InputExample`s for the train set."""
    raise NotImplementedError()

  def get_dev_examples(self, data_dir):
    """Gets a collection of `InputExample`s for the dev set."""
    raise NotImplementedError()

  def get_test_examples(self, data_dir):
    """Gets a collection of `InputExample`s for prediction."""
    raise NotImplementedError()

  def get_labels(self):
    """Gets the list of labels for this data set; None for a regression task."""
    raise NotImplementedError()

  @classmethod
  def _read_tsv(cls, input_file, quotechar=None):
    """Reads a tab separated value file.

    Returns:
      A list with one list of column strings per line. Each row also has a `location`
      attribute ("FILE line N") that error messages use.

    Raises:
      script_io.InputError: the file does not exist.
    """
    script_io.require_file(input_file, "data_dir")
    with tf.gfile.Open(input_file, "r") as reader:
      rows = csv.reader(reader, delimiter="\t", quotechar=quotechar)
      return [
          _TsvRow(row, "%s line %d" % (input_file, line_number))
          for line_number, row in enumerate(rows, start=1)
      ]

  def _checked_label(self, row, label):
    """Returns `label`, read from `row`, if it is one of get_labels() (a number for regression).

    Raises:
      script_io.InputError: the label is unknown, naming the file and line.
    """
    label_list = self.get_labels()
    if label_list is None:
      try:
        float(label)
      except ValueError:
        raise script_io.InputError(
            "%s: the label %r is not a number" % (row.location, label)) from None
    elif label not in label_list:
      raise script_io.InputError(
          "%s: unknown label %r; the labels are %s" %
          (row.location, label, ", ".join(label_list)))
    return label


class XnliProcessor(DataProcessor):
  """Processor for the XNLI data set: trains on MultiNLI machine-translated into `language`."""

  def __init__(self):
    self.language = "zh"

  def get_train_examples(self, data_dir):
    """Reads multinli/multinli.train.LANGUAGE.tsv: premise, hypo, label, after a header."""
    rows = self._read_tsv(
        os.path.join(data_dir, "multinli", "multinli.train.%s.tsv" % self.language))
    examples = []
    for (i, row) in enumerate(rows):
      if i == 0:
        continue
      _require_columns(row, 3)
      label = tokenization.convert_to_unicode(row[2])
      # The translated training set spells one label differently from the XNLI sets.
      if label == "contradictory":
        label = "contradiction"
      examples.append(InputExample(
          guid="train-%d" % i,
          text_a=tokenization.convert_to_unicode(row[0]),
          text_b=tokenization.convert_to_unicode(row[1]),
          label=self._checked_label(row, label)))
    return examples

  def get_dev_examples(self, data_dir):
    """Reads the `language` lines of xnli.dev.tsv."""
    return self._read_xnli_set(os.path.join(data_dir, "xnli.dev.tsv"), "dev")

  def get_test_examples(self, data_dir):
    """Reads the `language` lines of xnli.test.tsv, which has the layout of xnli.dev.tsv."""
    return self._read_xnli_set(os.path.join(data_dir, "xnli.test.tsv"), "test")

  def get_labels(self):
    """See base class."""
    return ["contradiction", "entailment", "neutral"]

  def _read_xnli_set(self, input_file, set_type):
    """Reads an XNLI set: language, gold_label, ..., sentence1 (column 6), sentence2 (7)."""
    examples = []
    for (i, row) in enumerate(self._read_tsv(input_file)):
      if i == 0:
        continue
      _require_columns(row, 8)
      if tokenization.convert_to_unicode(row[0]) != self.language:
        continue
      examples.append(InputExample(
          guid="%s-%d" % (set_type, i),
          text_a=tokenization.convert_to_unicode(row[6]),
          text_b=tokenization.convert_to_unicode(row[7]),
          label=self._checked_label(row, tokenization.convert_to_unicode(row[1]))))
    return examples


# Where a GLUE file keeps each field: column indexes, or None for a field it does not have.
# `guid` None numbers the examples by line; `label` may count from the end (-1: last column).
TsvLayout = collections.namedtuple("TsvLayout", ["guid", "text_a", "text_b", "label"])


class GlueProcessor(DataProcessor):
  """A GLUE task: train.tsv, dev.tsv and test.tsv in the task's folder.

  Subclasses give the labels (None for a regression) and the column layouts of the labeled
  (train and dev) files and of the test file, whose examples get the first label as a
  placeholder. Test files start with a header line; the labeled files do too unless
  `labeled_files_have_header` is False.
  """

  labels = None
  labeled_layout = None
  test_layout = None
  labeled_files_have_header = True
  dev_file = "dev.tsv"
  dev_set_type = "dev"
  test_file = "test.tsv"

  def get_train_examples(self, data_dir):
    """See base class."""
    return self._create_examples(self._read_tsv(os.path.join(data_dir, "train.tsv")), "train")

  def get_dev_examples(self, data_dir):
    """See base class."""
    return self._create_examples(
        self._read_tsv(os.path.join(data_dir, self.dev_file)), self.dev_set_type)

  def get_test_examples(self, data_dir):
    """See base class."""
    return self._create_examples(self._read_tsv(os.path.join(data_dir, self.test_file)), "test")

  def get_labels(self):
    """See base class."""
    return self.labels

  def _create_examples(self, rows, set_type):
    """Creates the examples of one set ("train", "test", or the dev set's type) from its rows."""
    is_test = set_type == "test"
    layout = self.test_layout if is_test else self.labeled_layout
    has_header = is_test or self.labeled_files_have_header
    num_columns = _num_columns(layout)
    examples = []
    for (i, row) in enumerate(rows):
      if has_header and i == 0:
        continue
      _require_columns(row, num_columns)
      guid_suffix = i if layout.guid is None else tokenization.convert_to_unicode(row[layout.guid])
      text_b = None
      if layout.text_b is not None:
        text_b = tokenization.convert_to_unicode(row[layout.text_b])
      if is_test:
        label = "0" if self.labels is None else self.labels[0]
      else:
        label = self._checked_label(row, tokenization.convert_to_unicode(row[layout.label]))
      examples.append(InputExample(
          guid="%s-%s" % (set_type, guid_suffix),
          text_a=tokenization.convert_to_unicode(row[layout.text_a]),
          text_b=text_b,
          label=label))
    return examples


def _num_columns(layout):
  """Returns how many columns a row needs to hold every field of a `TsvLayout`."""
  from_start = [column for column in layout if column is not None and column >= 0]
  num_columns = max(from_start) + 1
  if layout.label is not None and layout.label < 0:
    # A label counted from the end follows the other fields.
    num_columns += -layout.label
  return num_columns


class MnliProcessor(GlueProcessor):
  """Processor for the MultiNLI data set (GLUE version), matched dev and test sets."""

  labels = ["contradiction", "entailment", "neutral"]
  # index, promptID, pairID, genre, 4 parses, sentence1, sentence2, label1, ..., gold_label.
  labeled_layout = TsvLayout(guid=0, text_a=8, text_b=9, label=-1)
  test_layout = TsvLayout(guid=0, text_a=8, text_b=9, label=None)
  dev_file = "dev_matched.tsv"
  dev_set_type = "dev_matched"
  test_file = "test_matched.tsv"


class MnliMismatchedProcessor(MnliProcessor):
  """MultiNLI with the dev and test sets of genres not in the training set."""

  dev_file = "dev_mismatched.tsv"
  dev_set_type = "dev_mismatched"
  test_file = "test_mismatched.tsv"


class MrpcProcessor(GlueProcessor):
  """Processor for the MRPC data set (GLUE version)."""

  labels = ["0", "1"]
  # Quality, #1 ID, #2 ID, #1 String, #2 String; test.tsv has index in place of Quality.
  labeled_layout = TsvLayout(guid=None, text_a=3, text_b=4, label=0)
  test_layout = TsvLayout(guid=None, text_a=3, text_b=4, label=None)


class ColaProcessor(GlueProcessor):
  """Processor for the CoLA data set (GLUE version): single sentences, acceptable or not."""

  labels = ["0", "1"]
  # source, label, original judgement, sentence; without a header. test.tsv: index, sentence.
  labeled_layout = TsvLayout(guid=None, text_a=3, text_b=None, label=1)
  test_layout = TsvLayout(guid=None, text_a=1, text_b=None, label=None)
  labeled_files_have_header = False


class Sst2Processor(GlueProcessor):
  """Processor for the SST-2 data set: single sentences, negative (0) or positive (1)."""

  labels = ["0", "1"]
  labeled_layout = TsvLayout(guid=None, text_a=0, text_b=None, label=1)
  test_layout = TsvLayout(guid=0, text_a=1, text_b=None, label=None)


class StsbProcessor(GlueProcessor):
  """Processor for the STS-B data set: sentence pairs scored 0 to 5, a regression task."""

  labels = None
  # index, genre, filename, year, old_index, source1, source2, sentence1, sentence2, score.
  labeled_layout = TsvLayout(guid=0, text_a=7, text_b=8, label=9)
  test_layout = TsvLayout(guid=0, text_a=7, text_b=8, label=None)


class QqpProcessor(GlueProcessor):
  """Processor for the QQP data set: question pairs, duplicate (1) or not (0)."""

  labels = ["0", "1"]
  # id, qid1, qid2, question1, question2, is_duplicate. test.tsv: id, question1, question2.
  labeled_layout = TsvLayout(guid=0, text_a=3, text_b=4, label=5)
  test_layout = TsvLayout(guid=0, text_a=1, text_b=2, label=None)


class QnliProcessor(GlueProcessor):
  """Processor for the QNLI data set: does the sentence answer the question?"""

  labels = ["entailment", "not_entailment"]
  # index, question, sentence, label.
  labeled_layout = TsvLayout(guid=0, text_a=1, text_b=2, label=3)
  test_layout = TsvLayout(guid=0, text_a=1, text_b=2, label=None)


class RteProcessor(QnliProcessor):
  """Processor for the RTE data set: index, sentence1, sentence2, (not_)entailment."""


class WnliProcessor(GlueProcessor):
  """Processor for the WNLI data set: index, sentence1, sentence2, label (1: entailment)."""

  labels = ["0", "1"]
  labeled_layout = QnliProcessor.labeled_layout
  test_layout = QnliProcessor.test_layout


# --task_name (any case) -> processor class.
PROCESSORS = {
    "cola": ColaProcessor,
    "mnli": MnliProcessor,
    "mnli_mismatched": MnliMismatchedProcessor,
    "mnli-mm": MnliMismatchedProcessor,
    "mrpc": MrpcProcessor,
    "qnli": QnliProcessor,
    "qqp": QqpProcessor,
    "rte": RteProcessor,
    "sst-2": Sst2Processor,
    "sts-b": StsbProcessor,
    "wnli": WnliProcessor,
    "xnli": XnliProcessor,
}


def convert_single_example(ex_index, example, label_list, max_seq_length, tokenizer):
  """Converts a single `InputExample` into a single `InputFeatures`.

  The tokens are [CLS] A [SEP] for a single sentence and [CLS] A [SEP] B [SEP] for a pair,
  with segment id 0 up to the first [SEP] and 1 after it, truncated to `max_seq_length` and
  zero-padded to it. The first five examples are logged.

  Args:
    ex_index: int, position of the example in its set.
    example: an `InputExample`, or a `PaddingInputExample` (all-zero features).
    label_list: the labels, whose positions are the label ids; None for regression, where the
      label is a number.
    max_seq_length: int, length of the features.
    tokenizer: a `tokenization.FullTokenizer`.

  Returns:
    An `InputFeatures` with lists of `max_seq_length` ints.

  Raises:
    script_io.InputError: the example's label is not in `label_list`.
  """
  if isinstance(example, PaddingInputExample):
    return InputFeatures(
        input_ids=[0] * max_seq_length,
        input_mask=[0] * max_seq_length,
        segment_ids=[0] * max_seq_length,
        label_id=0.0 if label_list is None else 0,
        is_real_example=False)

  tokens_a = tokenizer.tokenize(example.text_a)
  tokens_b = None
  if example.text_b:
    tokens_b = tokenizer.tokenize(example.text_b)
  if tokens_b:
    _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]

  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segment_ids = [0] * len(tokens)
  if tokens_b:
    tokens += tokens_b + ["[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  input_ids = tokenizer.convert_tokens_to_ids(tokens)
  # Only real tokens are attended to.
  input_mask = [1] * len(input_ids)

  padding = [0] * (max_seq_length - len(input_ids))
  input_ids += padding
  input_mask += padding
  segment_ids += padding

  label_id = _label_id(example, label_list)
  if ex_index < 5:
    tf.logging.info("*** Example ***")
    tf.logging.info("guid: %s", example.guid)
    tf.logging.info("tokens: %s", " ".join(tokenization.printable_text(x) for x in tokens))
    tf.logging.info("input_ids: %s", " ".join(str(x) for x in input_ids))
    tf.logging.info("input_mask: %s", " ".join(str(x) for x in input_mask))
    tf.logging.info("segment_ids: %s", " ".join(str(x) for x in segment_ids))
    tf.logging.info("label: %s (id = %s)", example.label, label_id)

  return InputFeatures(
      input_ids=input_ids,
      input_mask=input_mask,
      segment_ids=segment_ids,
      label_id=label_id,
      is_real_example=True)


def _label_id(example, label_list):
  """Returns the position of the example's label in `label_list`, or its value if None."""
  if label_list is None:
    return float(example.label)
  if example.label not in label_list:
    raise script_io.InputError(
        "example %s: unknown label %r; the labels are %s" %
        (example.guid, example.label, ", ".join(label_list)))
  return label_list.index(example.label)


def _serialized_tf_example(feature):
  """Returns the serialized tf.train.Example of one `InputFeatures`: the original's bytes."""

  def int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

  if isinstance(feature.label_id, float):
    label_feature = tf.train.Feature(float_list=tf.train.FloatList(value=[feature.label_id]))
  else:
    label_feature = int_feature([feature.label_id])
  features = collections.OrderedDict()
  features["input_ids"] = int_feature(feature.input_ids)
  features["input_mask"] = int_feature(feature.input_mask)
  features["segment_ids"] = int_feature(feature.segment_ids)
  features["label_ids"] = label_feature
  features["is_real_example"] = int_feature([int(feature.is_real_example)])
  return tf_example.serialize_example(features)


def file_based_convert_examples_to_features(examples, label_list, max_seq_length, tokenizer,
                                            output_file):
  """Converts `InputExample`s to features and writes them to the TFRecord `output_file`.

  Each record holds input_ids, input_mask and segment_ids (`max_seq_length` int64 each),
  label_ids (one int64, or one float for regression) and is_real_example (one int64). The file
  appears only once complete.
  """
  with script_io.atomic_output(output_file) as temporary_file:
    with tf.io.TFRecordWriter(temporary_file) as writer:
      for (ex_index, example) in enumerate(examples):
        if ex_index % 10000 == 0:
          tf.logging.info("Writing example %d of %d", ex_index, len(examples))
        feature = convert_single_example(ex_index, example, label_list, max_seq_length, tokenizer)
        writer.write(_serialized_tf_example(feature))


def file_based_input_fn_builder(input_file, seq_length, is_training, drop_remainder,
                                is_regression=False, trim_padding=False, batch_by_length=False):
  """Creates an `input_fn` for TPUEstimator that reads a file of the records above.

  Args:
    input_file: path of a TFRecord file from `file_based_convert_examples_to_features`.
    seq_length: int, the max_seq_length it was written with.
    is_training: whether to repeat and shuffle the records.
    drop_remainder: whether to drop a last, smaller batch (TPUs need fixed shapes).
    is_regression: whether label_ids are floats.
    trim_padding: cut batches to their longest sequence (off TPU), with batch_by_length of
      examples of similar length (see input_pipeline.batch_features).

  Returns:
    input_fn(params) giving batches of input_ids, input_mask, segment_ids
    [batch_size, seq_length] (or shorter with trim_padding), label_ids and is_real_example
    [batch_size].
  """
  name_to_features = {
      "input_ids": tf.FixedLenFeature([seq_length], tf.int64),
      "input_mask": tf.FixedLenFeature([seq_length], tf.int64),
      "segment_ids": tf.FixedLenFeature([seq_length], tf.int64),
      "label_ids": tf.FixedLenFeature([], tf.float32 if is_regression else tf.int64),
      "is_real_example": tf.FixedLenFeature([], tf.int64),
  }
  return input_pipeline.file_based_input_fn_builder(
      input_file, name_to_features, is_training, drop_remainder, trim_padding, batch_by_length)


def _truncate_seq_pair(tokens_a, tokens_b, max_length):
  """Truncates a sequence pair in place to at most `max_length` tokens in total.

  One token at a time comes off the end of the longer sequence: a sentence that is already
  short likely carries more information per token than the long one.
  """
  while len(tokens_a) + len(tokens_b) > max_length:
    if len(tokens_a) > len(tokens_b):
      tokens_a.pop()
    else:
      tokens_b.pop()


def create_model(bert_config, is_training, input_ids, input_mask, segment_ids, labels,
                 num_labels, use_one_hot_embeddings, is_regression=False,
                 compute_type=tf.float32):
  """Creates BERT with a classification (or regression) head on its pooled output.

  Args:
    bert_config: a `modeling.BertConfig`.
    is_training: bool; enables dropout, including 0.1 on the pooled output.
    input_ids, input_mask, segment_ids: int32 Tensors [batch_size, seq_length].
    labels: int32 Tensor [batch_size] of label ids (float32 scores for regression).
    num_labels: int, number of classes (1 for regression).
    use_one_hot_embeddings: bool, look embeddings up with a one-hot matmul (faster on TPU).
    is_regression: bool; the single output is a score trained with squared error.
    compute_type: the encoder's compute dtype (`modeling.BertModel`); the head is float32.
      In half precision the last layer is computed for the first token only.

  Returns:
    (loss [], per_example_loss [batch_size], logits [batch_size, num_labels],
    probabilities [batch_size, num_labels]), where for regression the last item is the
    predicted score [batch_size].
  """
  model = modeling.BertModel(
      config=bert_config,
      is_training=is_training,
      input_ids=input_ids,
      input_mask=input_mask,
      token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings,
      compute_type=compute_type,
      # The head reads the pooled output only: no other position of the last layer. In
      # float32 the last layer stays whole, as a matrix product of one row per example is
      # rounded differently from the original's.
      output_positions=None if compute_type == tf.float32 else input_ids[:, :0])
  output_layer = model.get_pooled_output()
  hidden_size = output_layer.shape[-1]

  output_weights = tf.get_variable(
      "output_weights", [num_labels, hidden_size],
      initializer=tf.truncated_normal_initializer(stddev=0.02))
  output_bias = tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())

  with tf.variable_scope("loss"):
    if is_training:
      output_layer = tf.nn.dropout(output_layer, rate=0.1)
    logits = tf.matmul(output_layer, output_weights, transpose_b=True)
    logits = tf.nn.bias_add(logits, output_bias)
    if is_regression:
      scores = tf.squeeze(logits, axis=-1)
      per_example_loss = tf.square(scores - labels)
      return tf.reduce_mean(per_example_loss), per_example_loss, logits, scores
    probabilities = tf.nn.softmax(logits, axis=-1)
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    one_hot_labels = tf.one_hot(labels, depth=num_labels, dtype=tf.float32)
    per_example_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
    return tf.reduce_mean(per_example_loss), per_example_loss, logits, probabilities


def _metric_fn(per_example_loss, label_ids, logits, is_real_example):
  """Eval metrics of a classifier, counting real examples only."""
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  return {
      "eval_accuracy": tf.metrics.accuracy(
          labels=label_ids, predictions=predictions, weights=is_real_example),
      "eval_loss": tf.metrics.mean(values=per_example_loss, weights=is_real_example),
  }


def _regression_metric_fn(per_example_loss, is_real_example):
  """Eval metrics of a regression that can be streamed; the correlations need all scores."""
  return {"eval_loss": tf.metrics.mean(values=per_example_loss, weights=is_real_example)}


def model_fn_builder(bert_config, num_labels, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, is_regression=False,
                     options=None):
  """Returns a TPUEstimator `model_fn` that trains, evaluates or predicts with `create_model`.

  Predictions are {"probabilities": [batch_size, num_labels]}, or {"score": [batch_size]} for
  regression (and "example_index" passed through when the input has it, see
  input_pipeline.restore_input_order). PREDICT needs only the features input_ids, input_mask
  and segment_ids. `options`, the `estimator_setup.RunOptions` that make_estimator gets too,
  give the encoder's precision (float16 trains with loss scaling) and the micro-batches per
  update (see create_optimizer); None means the defaults with `use_tpu`.
  """
  options = estimator_setup.model_fn_options(options, use_tpu)
  compute_type = precision.compute_type_for(options.precision, use_tpu)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator."""
    tf.logging.info("*** Features ***")
    for name in sorted(features.keys()):
      tf.logging.info("  name = %s, shape = %s", name, features[name].shape)

    label_ids = features.get("label_ids")
    if label_ids is None:
      # The requests to a SavedModel (serving.py) carry no label; the loss it feeds is not served.
      label_ids = tf.zeros(tf.shape(features["input_ids"])[:1],
                           dtype=tf.float32 if is_regression else tf.int32)
    if "is_real_example" in features:
      is_real_example = tf.cast(features["is_real_example"], dtype=tf.float32)
    else:
      is_real_example = tf.ones(tf.shape(label_ids), dtype=tf.float32)

    is_training = mode == runner.ModeKeys.TRAIN
    total_loss, per_example_loss, logits, outputs = create_model(
        bert_config, is_training, features["input_ids"], features["input_mask"],
        features["segment_ids"], label_ids, num_labels, use_one_hot_embeddings, is_regression,
        compute_type)
    scaffold_fn = model_checks.init_from_checkpoint(init_checkpoint, use_tpu)

    if mode == runner.ModeKeys.TRAIN:
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          gradient_accumulation_steps=options.gradient_accumulation_steps,
          **precision.mixed_precision_optimizer_options(compute_type))
      return runner.ModelSpec(
          mode=mode, loss=total_loss, train_op=train_op, scaffold_fn=scaffold_fn)
    if mode == runner.ModeKeys.EVAL:
      if is_regression:
        eval_metrics = (_regression_metric_fn, [per_example_loss, is_real_example])
      else:
        eval_metrics = (_metric_fn, [per_example_loss, label_ids, logits, is_real_example])
      return runner.ModelSpec(
          mode=mode, loss=total_loss, eval_metrics=eval_metrics, scaffold_fn=scaffold_fn)
    predictions = {"score": outputs} if is_regression else {"probabilities": outputs}
    if "example_index" in features:
      predictions["example_index"] = features["example_index"]
    return runner.ModelSpec(
        mode=mode, predictions=predictions, scaffold_fn=scaffold_fn)

  return estimator_setup.built_for(model_fn, options)


def _processor_for_task(task_name):
  """Returns the processor of --task_name, matched without regard to case."""
  if not task_name or task_name.lower() not in PROCESSORS:
    raise script_io.InputError(
        "--task_name=%s is not a known task; the tasks are %s" %
        (task_name, ", ".join(sorted(PROCESSORS))))
  return PROCESSORS[task_name.lower()]()


def _padded_for_tpu(examples, batch_size, use_tpu):
  """On TPU, appends `PaddingInputExample`s up to a multiple of `batch_size`."""
  if not use_tpu:
    return list(examples)
  num_padding = -len(examples) % batch_size
  return list(examples) + [PaddingInputExample() for _ in range(num_padding)]


def _log_run(title, examples, num_actual_examples, batch_size):
  """Logs the start of an evaluation or prediction over `examples`, padding included."""
  tf.logging.info("***** Running %s *****", title)
  tf.logging.info("  Num examples = %d (%d actual, %d padding)", len(examples),
                  num_actual_examples, len(examples) - num_actual_examples)
  tf.logging.info("  Batch size = %d", batch_size)


def _train(estimator, options, train_examples, label_list, tokenizer, num_train_steps):
  """Writes train.tf_record and trains for `num_train_steps`."""
  is_regression = label_list is None
  train_file = os.path.join(FLAGS.output_dir, "train.tf_record")
  file_based_convert_examples_to_features(
      train_examples, label_list, FLAGS.max_seq_length, tokenizer, train_file)
  tf.logging.info("***** Running training *****")
  tf.logging.info("  Num examples = %d", len(train_examples))
  tf.logging.info("  Batch size = %d", FLAGS.train_batch_size)
  tf.logging.info("  Num steps = %d", num_train_steps)
  train_input_fn = file_based_input_fn_builder(
      train_file, FLAGS.max_seq_length, is_training=True, drop_remainder=True,
      is_regression=is_regression, trim_padding=options.trims_padding,
      batch_by_length=options.batch_by_length)
  training_guard.train(estimator, train_input_fn, num_train_steps, options.peer_timeout_seconds)


def _evaluate(estimator, options, eval_examples, label_list, tokenizer):
  """Writes eval.tf_record, evaluates on it and writes eval_results.txt.

  For regression, the Pearson and Spearman correlations of the predicted and true scores are
  computed from a prediction pass over the same records: a rank correlation cannot be streamed.
  """
  is_regression = label_list is None
  batch_size = FLAGS.eval_batch_size
  if is_regression:
    # The prediction pass reads the same file in batches of predict_batch_size.
    batch_size = math.lcm(FLAGS.eval_batch_size, FLAGS.predict_batch_size)
  examples = _padded_for_tpu(eval_examples, batch_size, options.use_tpu)
  eval_file = os.path.join(FLAGS.output_dir, "eval.tf_record")
  file_based_convert_examples_to_features(
      examples, label_list, FLAGS.max_seq_length, tokenizer, eval_file)
  _log_run("evaluation", examples, len(eval_examples), FLAGS.eval_batch_size)

  # TPUs need fixed batch shapes, so the padded set is read in whole batches.
  eval_steps = len(examples) // FLAGS.eval_batch_size if options.use_tpu else None
  eval_input_fn = file_based_input_fn_builder(
      eval_file, FLAGS.max_seq_length, is_training=False, drop_remainder=options.use_tpu,
      is_regression=is_regression, trim_padding=options.trims_padding,
      batch_by_length=options.batch_by_length)
  result = estimator.evaluate(input_fn=eval_input_fn, steps=eval_steps)
  if is_regression:
    predictions = input_pipeline.restore_input_order(estimator.predict(input_fn=eval_input_fn))
    scores = [prediction["score"] for prediction, _ in zip(predictions, eval_examples)]
    result.update(correlations(scores, [float(example.label) for example in eval_examples]))
  script_io.write_eval_results(os.path.join(FLAGS.output_dir, "eval_results.txt"), result)


def _predict(estimator, options, predict_examples, label_list, tokenizer):
  """Writes predict.tf_record, predicts on it and writes test_results.tsv.

  test_results.tsv has one line per test example, in input order: the class probabilities in
  the order of the task's labels, tab-separated, or the predicted score for regression.
  """
  is_regression = label_list is None
  examples = _padded_for_tpu(predict_examples, FLAGS.predict_batch_size, options.use_tpu)
  predict_file = os.path.join(FLAGS.output_dir, "predict.tf_record")
  file_based_convert_examples_to_features(
      examples, label_list, FLAGS.max_seq_length, tokenizer, predict_file)
  _log_run("prediction", examples, len(predict_examples), FLAGS.predict_batch_size)

  predict_input_fn = file_based_input_fn_builder(
      predict_file, FLAGS.max_seq_length, is_training=False, drop_remainder=options.use_tpu,
      is_regression=is_regression, trim_padding=options.trims_padding,
      batch_by_length=options.batch_by_length)
  predictions = input_pipeline.restore_input_order(estimator.predict(input_fn=predict_input_fn))
  output_predict_file = os.path.join(FLAGS.output_dir, "test_results.tsv")
  num_written_lines = 0
  with script_io.atomic_output(output_predict_file) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as writer:
      tf.logging.info("***** Predict results *****")
      # The padding examples come last; zip stops before them.
      for prediction, _ in zip(predictions, predict_examples):
        if is_regression:
          writer.write("%s\n" % prediction["score"])
        else:
          writer.write("\t".join(str(p) for p in prediction["probabilities"]) + "\n")
        num_written_lines += 1
  assert num_written_lines == len(predict_examples)


def _export(bert_config, label_list):
  """Writes the model of the latest checkpoint (or --init_checkpoint) into --export_dir.

  The SavedModel's serving_default signature returns "probabilities" [batch_size, num_labels],
  or "score" [batch_size] for regression; see serving.py. `ClassifierPredictor` serves it.
  """
  is_regression = label_list is None
  model_fn = model_fn_builder(
      bert_config=bert_config,
      num_labels=1 if is_regression else len(label_list),
      init_checkpoint=None,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=None,
      num_warmup_steps=None,
      use_tpu=False,
      use_one_hot_embeddings=False,
      is_regression=is_regression)
  serving.export_saved_model(
      model_fn, serving.checkpoint_to_export(FLAGS.output_dir, FLAGS.init_checkpoint),
      FLAGS.export_dir, FLAGS.max_seq_length, FLAGS.vocab_file,
      settings={"exported_by": "run_classifier.py", "task_name": FLAGS.task_name.lower(),
                "labels": label_list, "do_lower_case": FLAGS.do_lower_case})


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)

  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict or FLAGS.export_dir):
    raise script_io.InputError(
        "at least one of --do_train, --do_eval or --do_predict must be true, or --export_dir "
        "given")
  if (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict) and not FLAGS.data_dir:
    raise script_io.InputError("--data_dir is required by --do_train, --do_eval and --do_predict")
  if FLAGS.max_seq_length < 3:
    raise script_io.InputError(
        "--max_seq_length=%d leaves no room for the text: [CLS] A [SEP] B [SEP] needs at "
        "least 3" % FLAGS.max_seq_length)
  script_io.check_positive({
      "train_batch_size": FLAGS.train_batch_size if FLAGS.do_train else None,
      "eval_batch_size": FLAGS.eval_batch_size if FLAGS.do_eval else None,
      "predict_batch_size": FLAGS.predict_batch_size if FLAGS.do_predict else None,
      "iterations_per_loop": FLAGS.iterations_per_loop})
  options = estimator_setup.RunOptions.from_flag_values(FLAGS.flag_values_dict())
  estimator_setup.check_scale_options(options, FLAGS.train_batch_size, {
      "--do_eval": FLAGS.do_eval, "--do_predict": FLAGS.do_predict,
      "--export_dir": FLAGS.export_dir})
  if FLAGS.export_dir and not FLAGS.do_train:
    serving.checkpoint_to_export(FLAGS.output_dir, FLAGS.init_checkpoint)
  tokenizer = script_io.load_tokenizer(FLAGS.vocab_file, FLAGS.do_lower_case,
                                       FLAGS.init_checkpoint)
  processor = _processor_for_task(FLAGS.task_name)
  bert_config = model_checks.load_bert_config(FLAGS.bert_config_file, FLAGS.max_seq_length,
                                                 FLAGS.do_train)
  model_checks.check_vocab_fits_model(tokenizer.vocab, FLAGS.vocab_file, bert_config,
                                         FLAGS.bert_config_file)
  model_checks.check_init_checkpoint(FLAGS.init_checkpoint, bert_config)
  label_list = processor.get_labels()
  num_labels = 1 if label_list is None else len(label_list)
  script_io.check_output_dir(FLAGS.output_dir, "output_dir")
  model_checks.check_output_dir_checkpoint(FLAGS.output_dir, bert_config, {
      "output_weights": [num_labels, bert_config.hidden_size], "output_bias": [num_labels]})
  if FLAGS.export_dir:
    script_io.check_output_dir(FLAGS.export_dir, "export_dir")

  # All sets are read first, so a bad line in test.tsv stops the run before training does.
  train_examples = processor.get_train_examples(FLAGS.data_dir) if FLAGS.do_train else None
  eval_examples = processor.get_dev_examples(FLAGS.data_dir) if FLAGS.do_eval else None
  predict_examples = processor.get_test_examples(FLAGS.data_dir) if FLAGS.do_predict else None

  num_train_steps = None
  num_warmup_steps = None
  if FLAGS.do_train:
    num_train_steps = int(len(train_examples) / FLAGS.train_batch_size * FLAGS.num_train_epochs)
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    if num_train_steps < 1:
      raise script_io.InputError(
          "--do_train: %d training examples make no full batch of --train_batch_size=%d in "
          "--num_train_epochs=%s" %
          (len(train_examples), FLAGS.train_batch_size, FLAGS.num_train_epochs))

  tf.gfile.MakeDirs(FLAGS.output_dir)
  is_regression = label_list is None
  model_fn = model_fn_builder(
      bert_config=bert_config,
      num_labels=num_labels,
      init_checkpoint=FLAGS.init_checkpoint,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=num_warmup_steps,
      use_tpu=options.use_tpu,
      use_one_hot_embeddings=options.use_tpu,
      is_regression=is_regression,
      options=options)
  estimator = estimator_setup.make_estimator(
      model_fn, FLAGS.output_dir, options,
      train_batch_size=FLAGS.train_batch_size,
      eval_batch_size=FLAGS.eval_batch_size,
      predict_batch_size=FLAGS.predict_batch_size,
      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
      iterations_per_loop=FLAGS.iterations_per_loop)

  if FLAGS.do_train:
    _train(estimator, options, train_examples, label_list, tokenizer, num_train_steps)
  if FLAGS.do_eval:
    _evaluate(estimator, options, eval_examples, label_list, tokenizer)
  if FLAGS.do_predict:
    _predict(estimator, options, predict_examples, label_list, tokenizer)
  if FLAGS.export_dir:
    _export(bert_config, label_list)


# ------------------------------------------------------------------------------------------------
# Beyond the script's own path: the original's in-memory input for notebooks, the correlations
# of STS-B, and the predictor that serves an exported model.


def input_fn_builder(features, seq_length, is_training, drop_remainder):
  """Creates an `input_fn` that serves a list of `InputFeatures` held in memory.

  For small data sets and notebooks; the script itself goes through TFRecord files. Every
  example becomes a constant in the graph, so this does not scale to large sets.

  Returns:
    input_fn(params) giving batches of input_ids, input_mask, segment_ids
    [batch_size, seq_length], label_ids and is_real_example [batch_size].
  """
  label_ids = [feature.label_id for feature in features]
  label_dtype = tf.float32 if any(isinstance(x, float) for x in label_ids) else tf.int32
  columns = {
      "input_ids": ([f.input_ids for f in features], [seq_length], tf.int32),
      "input_mask": ([f.input_mask for f in features], [seq_length], tf.int32),
      "segment_ids": ([f.segment_ids for f in features], [seq_length], tf.int32),
      "label_ids": (label_ids, [], label_dtype),
      "is_real_example": ([int(f.is_real_example) for f in features], [], tf.int32),
  }

  def input_fn(params):
    """Returns a `tf.data.Dataset` of the features, batched by params["batch_size"]."""
    dataset = tf.data.Dataset.from_tensor_slices({
        name: tf.constant(values, shape=[len(features)] + shape, dtype=dtype)
        for name, (values, shape, dtype) in columns.items()
    })
    if is_training:
      dataset = dataset.repeat()
      dataset = dataset.shuffle(buffer_size=100)
    return dataset.batch(batch_size=params["batch_size"], drop_remainder=drop_remainder)

  return input_fn


def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer):
  """Converts a list of `InputExample`s into a list of `InputFeatures`."""
  features = []
  for (ex_index, example) in enumerate(examples):
    if ex_index % 10000 == 0:
      tf.logging.info("Writing example %d of %d", ex_index, len(examples))
    features.append(
        convert_single_example(ex_index, example, label_list, max_seq_length, tokenizer))
  return features


def correlations(predictions, labels):
  """Returns {"eval_pearson": ..., "eval_spearman": ...} of two equally long lists of numbers.

  Spearman's correlation is Pearson's correlation of the ranks, tied values sharing the mean
  of their ranks.
  """
  predictions = np.asarray(predictions, dtype=np.float64)
  labels = np.asarray(labels, dtype=np.float64)
  return {
      "eval_pearson": _pearson(predictions, labels),
      "eval_spearman": _pearson(_ranks(predictions), _ranks(labels)),
  }


def _pearson(x, y):
  """Pearson correlation of two 1-D arrays; NaN when either is constant."""
  x = x - x.mean()
  y = y - y.mean()
  denominator = math.sqrt(np.dot(x, x) * np.dot(y, y))
  return float(np.dot(x, y) / denominator) if denominator else float("nan")


def _ranks(values):
  """Ranks (1 = smallest) of a 1-D array; tied values get the mean of the ranks they span."""
  order = np.argsort(values, kind="mergesort")
  sorted_values = values[order]
  ranks = np.empty(len(values), dtype=np.float64)
  start = 0
  while start < len(values):
    end = start
    while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
      end += 1
    ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
    start = end + 1
  return ranks


class ClassifierPredictor(object):
  """Classifies raw text with a SavedModel from --export_dir, loaded once, for servers.

  The text goes through this script's own conversion (FullTokenizer with the exported
  vocabulary and casing, then `convert_single_example`), so a prediction equals the line that
  --do_predict writes in test_results.tsv for the same text:

    predictor = run_classifier.ClassifierPredictor("/tmp/mrpc_output/export")
    probabilities = predictor.predict("He said so.", "So he said.")

  Attributes:
    labels: the task's labels, in the order of the probabilities; None for regression.
  """

  def __init__(self, saved_model_dir):
    """Loads a SavedModel folder of --export_dir, or the highest version in --export_dir.

    Raises:
      ValueError: it is not a SavedModel that run_classifier.py exported.
    """
    self._model = serving.SavedModelPredictor(saved_model_dir)
    settings = self._model.required_settings("run_classifier.py")
    self.labels = settings["labels"]
    self._tokenizer = tokenization.FullTokenizer(
        vocab_file=self._model.vocab_file, do_lower_case=settings["do_lower_case"])
    # Numbers the requests as convert_single_example numbers examples: it logs the first five.
    self._request_index = itertools.count()

  def predict(self, text_a, text_b=None):
    """Predicts for one text, or one pair of texts.

    Returns:
      The probabilities of `labels`, a list of floats; for regression, the score, a float.
    """
    ex_index = next(self._request_index)
    example = InputExample(guid="request-%d" % ex_index, text_a=text_a, text_b=text_b,
                           label="0" if self.labels is None else self.labels[0])
    feature = convert_single_example(
        ex_index, example, self.labels, self._model.max_seq_length, self._tokenizer)
    outputs = self._model.predict(
        [feature.input_ids], [feature.input_mask], [feature.segment_ids])
    if self.labels is None:
      return float(outputs["score"][0])
    return [float(probability) for probability in outputs["probabilities"][0]]


if __name__ == "__main__":
  flags.mark_flag_as_required("task_name")
  flags.mark_flag_as_required("vocab_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("output_dir")
  script_io.run_main(main)
