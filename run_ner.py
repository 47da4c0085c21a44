"""Fine-tunes BERT to tag words: named entities (CoNLL-2003 and the like) and other word tags.

The data are CoNLL files in --data_dir: train.txt, dev.txt (or valid.txt) and test.txt, one word
per line with its tag in the last whitespace-separated column, blank lines between sentences,
`-DOCSTART-` lines (document boundaries) ignored. Tags are IOB1 (CoNLL-2003), IOB2 (BIO) or
IOBES, or plain tags without a prefix (part of speech). The labels are the tags of train.txt,
"O" first and the others sorted, or those of --label_file in its order.

Each sentence's words are split into WordPiece tokens. A word's label sits on its first token;
the other tokens of the word, [CLS], [SEP] and the padding are left out of the loss. A sentence
longer than max_seq_length - 2 tokens is cut into overlapping windows `doc_stride` tokens apart
(as run_squad.py cuts contexts), so no word is dropped, and each word is predicted from the
window where its first token has the most context.

The model is BertModel's sequence output, dropout (the config's hidden_dropout_prob) when
training, and one dense layer over the labels: `cls/ner/output_weights` [num_labels,
hidden_size] and `cls/ner/output_bias` [num_labels]. Checkpoints hold these next to the
encoder's bert/... variables; convert_hf_checkpoint.py converts them to and from Hugging Face's
BertForTokenClassification (`classifier.weight`, `classifier.bias`).

Outputs in --output_dir: eval_results.txt (--do_eval: the entity precision, recall and F1 on the
dev set, overall and per entity type, and the word accuracy, as conlleval counts them; see
conll_metrics.py), test_predictions.txt (--do_predict: word, gold tag if test.txt has tags,
predicted tag, the input conlleval reads) and, when test.txt has tags, test_results.txt with
the scores of eval_results.txt. With --export_dir the model is also written as a SavedModel
(see serving.py), which TensorFlow Serving or `TaggerPredictor` serves.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import model_checks
import os
import random

from absl import flags
import conll_metrics
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
import windowing

flags.DEFINE_string(
    "data_dir", None,
    "The folder of the CoNLL files: train.txt, dev.txt (or valid.txt) and test.txt.")

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")

flags.DEFINE_string("vocab_file", None, "The vocabulary file that the BERT model was trained on.")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints, the TFRecord features and the results "
    "will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_string(
    "label_file", None,
    "Optional: a file of the labels, one per line, in the order of the model's outputs. "
    "Default: the tags of train.txt in --data_dir, \"O\" first and the others sorted.")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased models and False for "
    "cased models.")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. Longer sentences "
    "are cut into overlapping windows; shorter ones are padded.")

flags.DEFINE_integer(
    "doc_stride", 64,
    "When a sentence is cut into windows, how many tokens each window starts after the last.")

flags.DEFINE_bool("do_train", False, "Whether to run training on train.txt.")

flags.DEFINE_bool("do_eval", False, "Whether to score the predictions on the dev set.")

flags.DEFINE_bool("do_predict", False, "Whether to tag test.txt.")

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

TRAIN_FILE = "train.txt"
DEV_FILES = ("dev.txt", "valid.txt")
TEST_FILE = "test.txt"

# The first word of the line between two documents in CoNLL-2003 files.
DOCUMENT_START = "-DOCSTART-"

# The tagging head's variables.
OUTPUT_WEIGHTS_NAME = "cls/ner/output_weights"
OUTPUT_BIAS_NAME = "cls/ner/output_bias"

# The per-position features of a window, each [max_seq_length] ints.
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids", "label_weights")

# How many sentences file_based_convert_examples logs in full.
NUM_EXAMPLES_TO_LOG = 5


class InputExample(object):
  """One sentence of a CoNLL file: its words and, when the file has them, their tags."""

  def __init__(self, guid, words, labels, path, line_numbers):
    """Constructs an InputExample.

    Args:
      guid: unique id of the sentence, e.g. "dev-12".
      words: list of str.
      labels: list of str, the tag of each word; None for a test file without tags.
      path: the file the sentence comes from.
      line_numbers: list of int, the line of each word in `path`, for error messages.
    """
    self.guid = guid
    self.words = words
    self.labels = labels
    self.path = path
    self.line_numbers = line_numbers

  def location(self, word_index):
    """Returns "FILE line N" of one of the words."""
    return "%s line %d" % (self.path, self.line_numbers[word_index])


class InputFeatures(object):
  """The model input of one window of one sentence: lists of max_seq_length ints.

  label_weights is 1 where a word's first token is, label_ids holds the word's label id there
  (0 for a sentence without tags), and both are 0 at every other position.
  """

  def __init__(self, input_ids, input_mask, segment_ids, label_ids, label_weights):
    self.input_ids = input_ids
    self.input_mask = input_mask
    self.segment_ids = segment_ids
    self.label_ids = label_ids
    self.label_weights = label_weights


# How a sentence lies in its windows: the index of each word's first token among the sentence's
# tokens, and the windows (windowing.DocSpan) over those tokens.
SentenceWindows = collections.namedtuple("SentenceWindows", ["word_starts", "spans"])


def _read_lines(path):
  """Returns the lines of a UTF-8 text file as (line number, str) pairs, without line ends.

  Raises:
    script_io.InputError: a line is not UTF-8.
  """
  with tf.io.gfile.GFile(path, "rb") as reader:
    data = reader.read()
  lines = []
  for line_number, line in enumerate(data.splitlines(), start=1):
    try:
      # A byte order mark may start the file.
      lines.append((line_number, line.decode("utf-8-sig" if line_number == 1 else "utf-8")))
    except UnicodeDecodeError as error:
      raise script_io.InputError(
          "%s line %d is not UTF-8: %s" % (path, line_number, error)) from None
  return lines


def read_conll_file(path, set_type, tags_required):
  """Reads the sentences of a CoNLL file.

  Every line holds a word and then other columns, separated by whitespace; the last column is
  the word's tag. A blank line ends a sentence; a `-DOCSTART-` line ends one too and is left out.

  Args:
    path: the file.
    set_type: "train", "dev" or "test", for the sentences' guids.
    tags_required: whether every word needs a tag. If not, either every word line has a tag
      or none has (a test file of words only).

  Returns:
    list of InputExample, in file order; their labels are None when the file has no tags.

  Raises:
    script_io.InputError: the file is missing, empty, holds no sentence or is not UTF-8, or a
      line lacks its tag column; the message names the file and line.
  """
  script_io.require_file(path, "data_dir")
  lines = _read_lines(path)
  if not any(line.strip() for _, line in lines):
    raise script_io.InputError("%s is empty" % path)

  examples = []
  sentence = []  # The (line number, columns) of the words read since the last sentence ended.
  first_word = None  # (line number, whether it has a tag) of the file's first word line.
  # A blank line after the last one ends the last sentence.
  for line_number, line in lines + [(len(lines) + 1, "")]:
    columns = line.split()
    if columns and columns[0] != DOCUMENT_START:
      has_tag = len(columns) > 1
      first_word = first_word or (line_number, has_tag)
      if not has_tag and (tags_required or first_word[1]):
        raise script_io.InputError(
            "%s line %d: no tag column: expected the word, then its tag in the last column" %
            (path, line_number))
      if has_tag and not first_word[1]:
        raise script_io.InputError(
            "%s line %d has a tag column but line %d has only a word: give every word a tag, "
            "or none" % (path, line_number, first_word[0]))
      sentence.append((line_number, columns))
    elif sentence:
      examples.append(InputExample(
          guid="%s-%d" % (set_type, len(examples)),
          words=[columns[0] for _, columns in sentence],
          labels=[columns[-1] for _, columns in sentence] if first_word[1] else None,
          path=path,
          line_numbers=[number for number, _ in sentence]))
      sentence = []
  if not examples:
    raise script_io.InputError("%s holds no sentence, only %s lines" % (path, DOCUMENT_START))
  return examples


def _check_tag_forms(tag_locations):
  """Raises InputError if some tags have a B-, I-, E- or S- prefix and others none.

  Args:
    tag_locations: OrderedDict of tag -> where it first appears ("FILE line N"), in file order.
  """
  first_of_form = {}
  for tag, location in tag_locations.items():
    if tag == conll_metrics.OUTSIDE:
      continue
    has_prefix = conll_metrics.has_prefix(tag)
    if (not has_prefix) in first_of_form:
      other_tag, other_location = first_of_form[not has_prefix]
      raise script_io.InputError(
          "%s: tag %r %s a B-, I-, E- or S- prefix, unlike %r (%s): mixed tagging schemes" %
          (location, tag, "has" if has_prefix else "lacks", other_tag, other_location))
    first_of_form.setdefault(has_prefix, (tag, location))


def labels_of_training_set(examples):
  """Returns the labels of a training set: its tags, "O" first and the others sorted.

  Raises:
    script_io.InputError: some tags have a B-, I-, E- or S- prefix and others none.
  """
  tag_locations = collections.OrderedDict()
  for example in examples:
    for index, tag in enumerate(example.labels):
      if tag not in tag_locations:
        tag_locations[tag] = example.location(index)
  _check_tag_forms(tag_locations)
  return sorted(tag_locations, key=lambda tag: (tag != conll_metrics.OUTSIDE, tag))


def read_label_file(path):
  """Reads --label_file: one label per line, in the order of the model's outputs.

  Raises:
    script_io.InputError: the file is missing or holds no label, a label repeats or holds
      whitespace, or the labels mix tagging schemes.
  """
  script_io.require_file(path, "label_file")
  tag_locations = collections.OrderedDict()
  for line_number, line in _read_lines(path):
    label = line.strip()
    location = "%s line %d" % (path, line_number)
    if not label:
      continue
    if len(label.split()) > 1:
      raise script_io.InputError("%s: a label cannot hold whitespace: %r" % (location, label))
    if label in tag_locations:
      raise script_io.InputError(
          "%s: label %r again (%s)" % (location, label, tag_locations[label]))
    tag_locations[label] = location
  if not tag_locations:
    raise script_io.InputError("--label_file: %s holds no label" % path)
  _check_tag_forms(tag_locations)
  return list(tag_locations)


def _uses_iobes(label_list):
  """Whether the labels have E- or S- tags, so every sentence must be IOBES-tagged."""
  return any(conll_metrics.has_prefix(label) and conll_metrics.split_tag(label)[0] in ("E", "S")
             for label in label_list)


def _check_iobes(example):
  """Raises InputError at the first tag of the example that breaks IOBES.

  In IOBES an entity is one S- word, or a B- word, I- words and an E- word, all of one type.
  """
  open_type = None  # The type of the entity a B- or I- word leaves open.
  for index, tag in enumerate(example.labels):
    prefix, entity_type = conll_metrics.split_tag(tag)
    continues = prefix in ("I", "E")
    if continues != (open_type is not None) or (continues and entity_type != open_type):
      after = "%r" % example.labels[index - 1] if index else "the start of a sentence"
      raise script_io.InputError(
          "%s: tag %r after %s is not IOBES, but the labels have E- or S- tags: mixed tagging "
          "schemes" % (example.location(index), tag, after))
    open_type = entity_type if prefix in ("B", "I") else None
  if open_type is not None:
    raise script_io.InputError(
        "%s: the sentence ends on %r, which is not IOBES (an entity ends with E- or S-), but "
        "the labels have E- or S- tags: mixed tagging schemes" %
        (example.location(len(example.labels) - 1), example.labels[-1]))


def check_tags(examples, label_list, label_source):
  """Checks the tags of labeled examples against the labels.

  Args:
    examples: list of InputExample; those without labels are skipped.
    label_list: the labels.
    label_source: where the labels come from, for messages (a file name or "--label_file").

  Raises:
    script_io.InputError: a tag is not a label, or the labels are IOBES and a sentence is not;
      the message names the file and line.
  """
  labels = set(label_list)
  iobes = _uses_iobes(label_list)
  for example in examples:
    if example.labels is None:
      continue
    for index, tag in enumerate(example.labels):
      if tag not in labels:
        raise script_io.InputError(
            "%s: unknown tag %r; the labels of %s are %s" %
            (example.location(index), tag, label_source, ", ".join(label_list)))
    if iobes:
      _check_iobes(example)


def convert_sentence(words, label_ids, max_seq_length, doc_stride, tokenizer):
  """Splits a sentence into WordPiece tokens and cuts them into windows of model input.

  Each window is [CLS] tokens [SEP], zero-padded to max_seq_length. A word that the tokenizer
  turns into no token at all (only characters it drops) becomes [UNK], so that every word has a
  first token.

  Args:
    words: list of str.
    label_ids: list of int, the label id of each word, or None for a sentence without tags.
    max_seq_length: int, the length of the features; windows hold max_seq_length - 2 tokens.
    doc_stride: int, how many tokens each window starts after the previous one.
    tokenizer: a `tokenization.FullTokenizer`.

  Returns:
    (SentenceWindows, list of InputFeatures, one per window).
  """
  tokens = []
  word_starts = []
  for word in words:
    word_starts.append(len(tokens))
    tokens.extend(tokenizer.tokenize(word) or [tokenizer.wordpiece_tokenizer.unk_token])
  spans = windowing.doc_spans(len(tokens), max_seq_length - 2, doc_stride)

  features = []
  for span in spans:
    window_tokens = ["[CLS]"] + tokens[span.start:span.start + span.length] + ["[SEP]"]
    padding = [0] * (max_seq_length - len(window_tokens))
    window_label_ids = [0] * max_seq_length
    label_weights = [0] * max_seq_length
    for word_index, word_start in enumerate(word_starts):
      if span.start <= word_start < span.start + span.length:
        position = 1 + word_start - span.start
        window_label_ids[position] = label_ids[word_index] if label_ids else 0
        label_weights[position] = 1
    features.append(InputFeatures(
        input_ids=tokenizer.convert_tokens_to_ids(window_tokens) + padding,
        input_mask=[1] * len(window_tokens) + padding,
        segment_ids=[0] * max_seq_length,
        label_ids=window_label_ids,
        label_weights=label_weights))
  return SentenceWindows(word_starts=word_starts, spans=spans), features


def _log_features(example, features, tokenizer):
  for feature in features:
    tf.logging.info("*** Example ***")
    tf.logging.info("guid: %s", example.guid)
    tokens = tokenizer.convert_ids_to_tokens(feature.input_ids[:sum(feature.input_mask)])
    tf.logging.info("tokens: %s", " ".join(tokenization.printable_text(x) for x in tokens))
    for name in FEATURE_NAMES:
      tf.logging.info("%s: %s", name, " ".join(str(x) for x in getattr(feature, name)))


def _serialized_tf_example(feature):
  """Returns the serialized tf.train.Example of one InputFeatures: the FEATURE_NAMES, in order."""
  features = collections.OrderedDict()
  for name in FEATURE_NAMES:
    features[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=getattr(feature, name)))
  return tf_example.serialize_example(features)


def file_based_convert_examples(examples, label_list, max_seq_length, doc_stride, tokenizer,
                                output_file, batch_multiple=1):
  """Writes the windows of every sentence to the TFRecord `output_file`, in order.

  Each record holds the FEATURE_NAMES, max_seq_length int64s each. The file appears only once
  complete. The windows of the first NUM_EXAMPLES_TO_LOG sentences are logged.

  Args:
    examples: list of InputExample.
    label_list: the labels, whose positions are the label ids.
    max_seq_length, doc_stride, tokenizer: see convert_sentence.
    output_file: path of the TFRecord file.
    batch_multiple: all-zero records are appended up to a multiple of this many (TPUs need
      whole batches; the predictions of these come last and are not read).

  Returns:
    list of SentenceWindows, one per example.
  """
  label_map = {label: index for index, label in enumerate(label_list)}
  all_windows = []
  num_records = 0
  with script_io.atomic_output(output_file) as temporary_file:
    with tf.io.TFRecordWriter(temporary_file) as writer:
      for (ex_index, example) in enumerate(examples):
        if ex_index % 10000 == 0:
          tf.logging.info("Writing example %d of %d", ex_index, len(examples))
        label_ids = None
        if example.labels is not None:
          label_ids = [label_map[label] for label in example.labels]
        windows, features = convert_sentence(example.words, label_ids, max_seq_length,
                                             doc_stride, tokenizer)
        if ex_index < NUM_EXAMPLES_TO_LOG:
          _log_features(example, features, tokenizer)
        all_windows.append(windows)
        for feature in features:
          writer.write(_serialized_tf_example(feature))
          num_records += 1
      padding = [0] * max_seq_length
      for _ in range(-num_records % batch_multiple):
        writer.write(_serialized_tf_example(
            InputFeatures(padding, padding, padding, padding, padding)))
  return all_windows


def input_fn_builder(input_file, seq_length, is_training, drop_remainder, trim_padding=False,
                     batch_by_length=False):
  """Creates an `input_fn` for TPUEstimator that reads a file of the records above.

  Args:
    input_file: path of a TFRecord file from `file_based_convert_examples`.
    seq_length: int, the max_seq_length it was written with.
    is_training: whether to repeat and shuffle the records.
    drop_remainder: whether to drop a last, smaller batch (TPUs need fixed shapes).
    trim_padding: cut batches to their longest sequence (off TPU), with batch_by_length of
      windows of similar length (see input_pipeline.batch_features).

  Returns:
    input_fn(params) giving batches of the FEATURE_NAMES, each [batch_size, seq_length] int32
    (or shorter with trim_padding).
  """
  name_to_features = {name: tf.FixedLenFeature([seq_length], tf.int64) for name in FEATURE_NAMES}
  return input_pipeline.file_based_input_fn_builder(
      input_file, name_to_features, is_training, drop_remainder, trim_padding, batch_by_length,
      sequence_features=FEATURE_NAMES)


def create_model(bert_config, is_training, input_ids, input_mask, segment_ids, num_labels,
                 use_one_hot_embeddings, compute_type=tf.float32):
  """Builds BERT with the tagging head: one logit per label at every position.

  Args:
    bert_config: `modeling.BertConfig`.
    is_training: bool; enables dropout, on the sequence output too.
    input_ids, input_mask, segment_ids: int32 Tensors [batch_size, seq_length].
    num_labels: int.
    use_one_hot_embeddings: bool, one-hot matmul embedding lookup (for TPUs).
    compute_type: the encoder's compute dtype (`modeling.BertModel`); the head is float32.

  Returns:
    logits, float32 [batch_size, seq_length, num_labels].
  """
  model = modeling.BertModel(
      config=bert_config,
      is_training=is_training,
      input_ids=input_ids,
      input_mask=input_mask,
      token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings,
      compute_type=compute_type)
  sequence_output = model.get_sequence_output()
  batch_size, seq_length, hidden_size = modeling.get_shape_list(sequence_output, expected_rank=3)

  output_weights = tf.get_variable(
      OUTPUT_WEIGHTS_NAME, [num_labels, hidden_size],
      initializer=modeling.create_initializer(bert_config.initializer_range))
  output_bias = tf.get_variable(
      OUTPUT_BIAS_NAME, [num_labels], initializer=tf.zeros_initializer())

  if is_training:
    sequence_output = modeling.dropout(sequence_output, bert_config.hidden_dropout_prob)
  # [B*T, H] x [L, H]^T -> [B*T, L]
  logits = tf.matmul(tf.reshape(sequence_output, [batch_size * seq_length, hidden_size]),
                     output_weights, transpose_b=True)
  logits = tf.nn.bias_add(logits, output_bias)
  return tf.reshape(logits, [batch_size, seq_length, num_labels])


def _tagging_loss(logits, label_ids, label_weights):
  """Mean cross-entropy over the positions of label_weights 1, the words' first tokens.

  Args:
    logits: float32 [batch_size, seq_length, num_labels].
    label_ids, label_weights: int32 [batch_size, seq_length].

  Returns:
    float32 scalar.
  """
  num_labels = modeling.get_shape_list(logits, expected_rank=3)[2]
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  one_hot_labels = tf.one_hot(label_ids, depth=num_labels, dtype=tf.float32)
  per_position_loss = -tf.reduce_sum(one_hot_labels * log_probs, axis=-1)
  weights = tf.cast(label_weights, tf.float32)
  # The small constant keeps a batch without any word (TPU padding) at a loss of 0.
  return tf.reduce_sum(weights * per_position_loss) / (tf.reduce_sum(weights) + 1e-5)


def model_fn_builder(bert_config, num_labels, init_checkpoint, learning_rate, num_train_steps,
                     num_warmup_steps, use_tpu, use_one_hot_embeddings, options=None):
  """Returns a TPUEstimator `model_fn`: TRAIN on the word labels, PREDICT label probabilities.

  Predictions are {"probabilities": [batch_size, seq_length, num_labels]} (and "example_index"
  passed through when the input has it, see input_pipeline.restore_input_order). PREDICT needs
  only the features input_ids, input_mask and segment_ids. `options`, the
  `estimator_setup.RunOptions` that make_estimator gets too, give the encoder's precision
  (float16 trains with loss scaling) and the micro-batches per update (see create_optimizer);
  None means the defaults with `use_tpu`.
  """
  options = estimator_setup.model_fn_options(options, use_tpu)
  compute_type = precision.compute_type_for(options.precision, use_tpu)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator."""
    tf.logging.info("*** Features ***")
    for name in sorted(features.keys()):
      tf.logging.info("  name = %s, shape = %s", name, features[name].shape)

    is_training = mode == runner.ModeKeys.TRAIN
    logits = create_model(
        bert_config, is_training, features["input_ids"], features["input_mask"],
        features["segment_ids"], num_labels, use_one_hot_embeddings, compute_type)
    scaffold_fn = model_checks.init_from_checkpoint(init_checkpoint, use_tpu)

    if mode == runner.ModeKeys.TRAIN:
      total_loss = _tagging_loss(logits, features["label_ids"], features["label_weights"])
      train_op = optimization.create_optimizer(
          total_loss, learning_rate, num_train_steps, num_warmup_steps, use_tpu,
          gradient_accumulation_steps=options.gradient_accumulation_steps,
          **precision.mixed_precision_optimizer_options(compute_type))
      return runner.ModelSpec(
          mode=mode, loss=total_loss, train_op=train_op, scaffold_fn=scaffold_fn)
    if mode == runner.ModeKeys.PREDICT:
      predictions = {"probabilities": tf.nn.softmax(logits, axis=-1)}
      if "example_index" in features:
        predictions["example_index"] = features["example_index"]
      return runner.ModelSpec(
          mode=mode, predictions=predictions, scaffold_fn=scaffold_fn)
    raise ValueError("Only TRAIN and PREDICT modes are supported: %s" % mode)

  return estimator_setup.built_for(model_fn, options)


def word_label_ids(windows, window_probabilities):
  """Returns the predicted label id of each word of a sentence.

  A word's label is the most probable one at its first token, in the window where that token
  has the most context (`windowing.best_window`).

  Args:
    windows: the sentence's SentenceWindows.
    window_probabilities: one array [length, num_labels] per window, length covering at least
      the window's tokens and [CLS].

  Returns:
    list of int, one per word.
  """
  label_ids = []
  for word_start in windows.word_starts:
    window_index = windowing.best_window(windows.spans, word_start)
    position = 1 + word_start - windows.spans[window_index].start
    label_ids.append(int(np.argmax(window_probabilities[window_index][position])))
  return label_ids


def predict_tags(predictions, all_windows, label_list):
  """Maps the model's predictions for the windows of sentences back onto their words.

  Args:
    predictions: iterator of prediction dicts ("probabilities" [length, num_labels]), one per
      window, in the order of the windows; any after the last window are not read.
    all_windows: list of SentenceWindows, one per sentence.
    label_list: the labels.

  Returns:
    list of sentences, each a list of predicted tags, one per word.
  """
  all_tags = []
  for windows in all_windows:
    probabilities = [next(predictions)["probabilities"] for _ in windows.spans]
    all_tags.append([label_list[i] for i in word_label_ids(windows, probabilities)])
  return all_tags


def scores_to_results(scores, prefix):
  """Returns conll_metrics scores as a dict of "PREFIX_name" -> number, for a results file.

  Overall: PREFIX_precision, _recall, _f1, _accuracy (of the words' tags), _words,
  _gold_entities, _found_entities, _correct_entities; per entity type T: PREFIX_precision_T,
  _recall_T and _f1_T.
  """
  overall = scores.overall
  results = {
      "accuracy": scores.accuracy,
      "precision": overall.precision,
      "recall": overall.recall,
      "f1": overall.f1,
      "words": scores.num_words,
      "gold_entities": overall.gold,
      "found_entities": overall.found,
      "correct_entities": overall.correct,
  }
  for entity_type, type_scores in scores.by_type.items():
    for name in ("precision", "recall", "f1"):
      results["%s_%s" % (name, entity_type)] = getattr(type_scores, name)
  return {"%s_%s" % (prefix, name): value for name, value in results.items()}


def write_predictions(output_file, examples, predicted_tags):
  """Writes test_predictions.txt: per word "word gold predicted" (or "word predicted" without
  gold tags), a blank line after each sentence, as conlleval reads it."""
  with script_io.atomic_output(output_file) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as writer:
      for example, tags in zip(examples, predicted_tags):
        for index, (word, tag) in enumerate(zip(example.words, tags)):
          gold = [example.labels[index]] if example.labels is not None else []
          writer.write(" ".join([word] + gold + [tag]) + "\n")
        writer.write("\n")


def _check_checkpoint_labels(checkpoint, num_labels, label_source):
  """Raises InputError if `checkpoint` has a tagging head for another number of labels."""
  shape = dict(tf.train.list_variables(checkpoint)).get(OUTPUT_WEIGHTS_NAME)
  if shape is not None and shape[0] != num_labels:
    raise script_io.InputError(
        "checkpoint %s tags %d labels, but %s gives %d: pass the --label_file (or train.txt) "
        "it was trained with" % (checkpoint, shape[0], label_source, num_labels))


def _dev_file(data_dir):
  """Returns the path of dev.txt, or of valid.txt where there is no dev.txt."""
  for name in DEV_FILES:
    path = os.path.join(data_dir, name)
    if tf.io.gfile.exists(path):
      return path
  raise script_io.InputError(
      "--do_eval: --data_dir=%s has no %s" % (data_dir, " or ".join(DEV_FILES)))


# The sentences of a run and the labels: the label list, where it comes from (for messages), and
# the examples of train.txt, the dev file and test.txt (None for those not read).
DataSets = collections.namedtuple(
    "DataSets", ["label_list", "label_source", "train", "dev", "test"])


def read_data_sets(data_dir, label_file, do_train, do_eval, do_predict):
  """Reads the files a run needs and the labels, and checks every tag against the labels.

  train.txt is read for training, and for the labels when there is no label_file.

  Returns:
    DataSets.

  Raises:
    script_io.InputError: a file is missing or malformed, a tag is unknown, the tags mix
      tagging schemes, or there are no labels at all.
  """
  train_file = os.path.join(data_dir or "", TRAIN_FILE)
  train = None
  if do_train or (data_dir and not label_file and tf.io.gfile.exists(train_file)):
    train = read_conll_file(train_file, "train", tags_required=True)
  if label_file:
    label_list, label_source = read_label_file(label_file), "--label_file"
  elif train is not None:
    label_list, label_source = labels_of_training_set(train), train_file
  else:
    raise script_io.InputError(
        "the labels come from --label_file, or else from train.txt in --data_dir: there is "
        "neither")
  dev = read_conll_file(_dev_file(data_dir), "dev", tags_required=True) if do_eval else None
  test = None
  if do_predict:
    test = read_conll_file(os.path.join(data_dir, TEST_FILE), "test", tags_required=False)
  for examples in (train, dev, test):
    check_tags(examples or [], label_list, label_source)
  return DataSets(label_list, label_source, train, dev, test)


def _predict_set(estimator, options, examples, record_file, label_list, max_seq_length,
                 doc_stride, tokenizer, batch_size):
  """Writes the windows of `examples` to `record_file`; returns their predicted tags."""
  all_windows = file_based_convert_examples(
      examples, label_list, max_seq_length, doc_stride, tokenizer, record_file,
      batch_multiple=batch_size if options.use_tpu else 1)
  tf.logging.info("***** Running prediction on %s *****", record_file)
  tf.logging.info("  Num sentences = %d, windows = %d", len(examples),
                  sum(len(windows.spans) for windows in all_windows))
  tf.logging.info("  Batch size = %d", batch_size)
  input_fn = input_fn_builder(record_file, max_seq_length, is_training=False,
                              drop_remainder=options.use_tpu, trim_padding=options.trims_padding,
                              batch_by_length=options.batch_by_length)
  predictions = input_pipeline.restore_input_order(estimator.predict(input_fn=input_fn))
  return predict_tags(predictions, all_windows, label_list)


def _write_scores(output_file, examples, predicted_tags, prefix):
  """Scores predicted tags against the examples' tags and writes them as a results file."""
  scores = conll_metrics.evaluate([example.labels for example in examples], predicted_tags)
  script_io.write_eval_results(output_file, scores_to_results(scores, prefix))


def _export(bert_config, label_list):
  """Writes the model of the latest checkpoint (or --init_checkpoint) into --export_dir.

  The SavedModel's serving_default signature returns "probabilities" [batch_size,
  max_seq_length, num_labels]; see serving.py. `TaggerPredictor` serves it.
  """
  model_fn = model_fn_builder(
      bert_config=bert_config, num_labels=len(label_list), init_checkpoint=None,
      learning_rate=FLAGS.learning_rate, num_train_steps=None, num_warmup_steps=None,
      use_tpu=False, use_one_hot_embeddings=False)
  serving.export_saved_model(
      model_fn, serving.checkpoint_to_export(FLAGS.output_dir, FLAGS.init_checkpoint),
      FLAGS.export_dir, FLAGS.max_seq_length, FLAGS.vocab_file,
      settings={"exported_by": "run_ner.py", "labels": label_list,
                "do_lower_case": FLAGS.do_lower_case, "doc_stride": FLAGS.doc_stride})


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)

  reads_data = FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict
  if not (reads_data or FLAGS.export_dir):
    raise script_io.InputError(
        "at least one of --do_train, --do_eval or --do_predict must be true, or --export_dir "
        "given")
  if reads_data and not FLAGS.data_dir:
    raise script_io.InputError("--data_dir is required by --do_train, --do_eval and --do_predict")
  if FLAGS.max_seq_length < 3:
    raise script_io.InputError(
        "--max_seq_length=%d leaves no room for a word: it needs [CLS], a token and [SEP]" %
        FLAGS.max_seq_length)
  if FLAGS.doc_stride < 1:
    raise script_io.InputError("--doc_stride=%d must be positive" % FLAGS.doc_stride)
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
  bert_config = model_checks.load_bert_config(FLAGS.bert_config_file, FLAGS.max_seq_length,
                                                 FLAGS.do_train)
  model_checks.check_vocab_fits_model(tokenizer.vocab, FLAGS.vocab_file, bert_config,
                                         FLAGS.bert_config_file)
  model_checks.check_init_checkpoint(FLAGS.init_checkpoint, bert_config)
  script_io.check_output_dir(FLAGS.output_dir, "output_dir")
  # The head's shapes depend on the labels; _check_checkpoint_labels checks them below.
  model_checks.check_output_dir_checkpoint(FLAGS.output_dir, bert_config)
  if FLAGS.export_dir:
    script_io.check_output_dir(FLAGS.export_dir, "export_dir")

  # All files are read and checked first, so that a bad line in test.txt stops the run before
  # training does.
  data = read_data_sets(FLAGS.data_dir, FLAGS.label_file, FLAGS.do_train, FLAGS.do_eval,
                        FLAGS.do_predict)
  label_list = data.label_list
  tf.logging.info("Labels (from %s): %s", data.label_source, " ".join(label_list))
  for checkpoint in (FLAGS.init_checkpoint, tf.train.latest_checkpoint(FLAGS.output_dir)):
    if checkpoint:
      _check_checkpoint_labels(checkpoint, len(label_list), data.label_source)

  tf.gfile.MakeDirs(FLAGS.output_dir)
  num_train_steps = None
  num_warmup_steps = None
  if FLAGS.do_train:
    # Shuffled here, once, so that the input_fn needs only a small shuffle buffer.
    train_examples = list(data.train)
    random.Random(12345).shuffle(train_examples)
    train_file = os.path.join(FLAGS.output_dir, "train.tf_record")
    num_windows = sum(len(windows.spans) for windows in file_based_convert_examples(
        train_examples, label_list, FLAGS.max_seq_length, FLAGS.doc_stride, tokenizer,
        train_file))
    num_train_steps = int(num_windows / FLAGS.train_batch_size * FLAGS.num_train_epochs)
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    if num_train_steps < 1:
      raise script_io.InputError(
          "--do_train: %d training windows make no full batch of --train_batch_size=%d in "
          "--num_train_epochs=%s" %
          (num_windows, FLAGS.train_batch_size, FLAGS.num_train_epochs))

  model_fn = model_fn_builder(
      bert_config=bert_config,
      num_labels=len(label_list),
      init_checkpoint=FLAGS.init_checkpoint,
      learning_rate=FLAGS.learning_rate,
      num_train_steps=num_train_steps,
      num_warmup_steps=num_warmup_steps,
      use_tpu=options.use_tpu,
      use_one_hot_embeddings=options.use_tpu,
      options=options)

  def make_estimator(predict_batch_size):
    # Evaluation predicts too, in batches of --eval_batch_size.
    return estimator_setup.make_estimator(
        model_fn, FLAGS.output_dir, options,
        train_batch_size=FLAGS.train_batch_size,
        predict_batch_size=predict_batch_size,
        save_checkpoints_steps=FLAGS.save_checkpoints_steps,
        iterations_per_loop=FLAGS.iterations_per_loop)

  if FLAGS.do_train:
    tf.logging.info("***** Running training *****")
    tf.logging.info("  Num sentences = %d, windows = %d", len(train_examples), num_windows)
    tf.logging.info("  Batch size = %d", FLAGS.train_batch_size)
    tf.logging.info("  Num steps = %d", num_train_steps)
    train_input_fn = input_fn_builder(train_file, FLAGS.max_seq_length, is_training=True,
                                      drop_remainder=True, trim_padding=options.trims_padding,
                                      batch_by_length=options.batch_by_length)
    training_guard.train(make_estimator(FLAGS.predict_batch_size), train_input_fn,
                          num_train_steps, options.peer_timeout_seconds)
  if FLAGS.do_eval:
    predicted = _predict_set(
        make_estimator(FLAGS.eval_batch_size), options, data.dev,
        os.path.join(FLAGS.output_dir, "eval.tf_record"), label_list, FLAGS.max_seq_length,
        FLAGS.doc_stride, tokenizer, FLAGS.eval_batch_size)
    _write_scores(os.path.join(FLAGS.output_dir, "eval_results.txt"), data.dev, predicted,
                  "eval")
  if FLAGS.do_predict:
    predicted = _predict_set(
        make_estimator(FLAGS.predict_batch_size), options, data.test,
        os.path.join(FLAGS.output_dir, "predict.tf_record"), label_list, FLAGS.max_seq_length,
        FLAGS.doc_stride, tokenizer, FLAGS.predict_batch_size)
    write_predictions(os.path.join(FLAGS.output_dir, "test_predictions.txt"), data.test,
                      predicted)
    if data.test[0].labels is not None:
      _write_scores(os.path.join(FLAGS.output_dir, "test_results.txt"), data.test, predicted,
                    "test")
  if FLAGS.export_dir:
    _export(bert_config, label_list)


# ------------------------------------------------------------------------------------------------
# Beyond the script's own path: the predictor that serves an exported model.


TaggedWord = collections.namedtuple("TaggedWord", ["text", "start", "end", "tag"])


class TaggerPredictor(object):
  """Tags raw text with a SavedModel from --export_dir, loaded once, for servers.

  The words go through this script's own conversion (FullTokenizer with the exported
  vocabulary and casing, windows of the exported --doc_stride), so the tags of a sentence equal
  those --do_predict writes in test_predictions.txt for the same words:

    predictor = run_ner.TaggerPredictor("/tmp/ner_output/export")
    predictor.tag("Jim lives in New York.")
    # [TaggedWord(text="Jim", start=0, end=3, tag="B-PER"), ...]

  Attributes:
    labels: the labels, in the order of the model's outputs.
  """

  def __init__(self, saved_model_dir):
    """Loads a SavedModel folder of --export_dir, or the highest version in --export_dir.

    Raises:
      ValueError: it is not a SavedModel that run_ner.py exported.
    """
    self._model = serving.SavedModelPredictor(saved_model_dir)
    settings = self._model.required_settings("run_ner.py")
    self.labels = settings["labels"]
    self._doc_stride = settings["doc_stride"]
    self._tokenizer = tokenization.FullTokenizer(
        vocab_file=self._model.vocab_file, do_lower_case=settings["do_lower_case"])

  def tag_words(self, words):
    """Tags one sentence given as its words (list of str): returns one tag per word."""
    if not words:
      return []
    windows, features = convert_sentence(words, None, self._model.max_seq_length,
                                         self._doc_stride, self._tokenizer)
    outputs = self._model.predict([feature.input_ids for feature in features],
                                  [feature.input_mask for feature in features],
                                  [feature.segment_ids for feature in features])
    return [self.labels[i] for i in word_label_ids(windows, outputs["probabilities"])]

  def tag(self, text):
    """Splits raw text into words (`tokenization.word_spans`) and tags them as one sentence.

    Returns:
      list of TaggedWord(text, start, end, tag), text[start:end] being the word.
    """
    spans = tokenization.word_spans(text)
    tags = self.tag_words([text[start:end] for start, end in spans])
    return [TaggedWord(text[start:end], start, end, tag) for (start, end), tag in zip(spans, tags)]


if __name__ == "__main__":
  flags.mark_flag_as_required("vocab_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("output_dir")
  script_io.run_main(main)
