# coding=utf-8
"""Extracts pre-computed feature vectors from BERT: per-token activations of chosen layers.

Reads one text per line (`text_a ||| text_b` for a pair), runs a BERT checkpoint over it and
writes one JSON object per line with the activations of every token in the layers named by
--layers, as the original `extract_features.py` does.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import json
import model_checks
import re

from absl import flags
import estimator_setup
import flag_groups
import input_pipeline
import modeling
import numpy as np
import precision
import runner
import script_io
import tensorflow.compat.v1 as tf
import tokenization

flags.DEFINE_string("input_file", None, "Text to embed: one sentence or `A ||| B` pair a line.")

flags.DEFINE_string("output_file", None, "JSON lines file of the extracted features.")

flags.DEFINE_string("layers", "-1,-2,-3,-4",
                    "Comma-separated encoder layers to output; -1 is the last.")

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file corresponding to the pre-trained BERT model. "
    "This specifies the model architecture.")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Sequences longer than this will be truncated, and sequences shorter "
    "than this will be padded.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model).")

flags.DEFINE_string("vocab_file", None,
                    "The vocabulary file that the BERT model was trained on.")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased "
    "models and False for cased models.")

flags.DEFINE_integer("batch_size", 32, "Batch size for predictions.")

flag_groups.define_tpu_flags()
flag_groups.define_speed_flags()

flags.DEFINE_bool(
    "use_one_hot_embeddings", False,
    "If True, tf.one_hot will be used for embedding lookups, otherwise "
    "tf.nn.embedding_lookup will be used. On TPUs, this should be True "
    "since it is much faster.")

FLAGS = flags.FLAGS

# "A ||| B" is a sentence pair; the split is at the last " ||| ", as the original's greedy match.
_PAIR_PATTERN = re.compile(r"^(.*) \|\|\| (.*)$")

# Examples logged in full, so the first features can be checked by eye.
_NUM_LOGGED_EXAMPLES = 5


class InputExample(object):
  """One line of the input: a text, or a pair of texts."""

  def __init__(self, unique_id, text_a, text_b):
    self.unique_id = unique_id
    self.text_a = text_a
    self.text_b = text_b


class InputFeatures(object):
  """The model inputs of one example, each a list of `seq_length` ints, and its tokens."""

  def __init__(self, unique_id, tokens, input_ids, input_mask, input_type_ids):
    self.unique_id = unique_id
    self.tokens = tokens
    self.input_ids = input_ids
    self.input_mask = input_mask
    self.input_type_ids = input_type_ids


# The per-position features of `input_fn_builder`.
_SEQUENCE_FEATURES = ("input_ids", "input_mask", "input_type_ids")


def input_fn_builder(features, seq_length, trim_padding=False, batch_by_length=False):
  """Creates an `input_fn` that serves `features` from memory, in order, once.

  Args:
    features: list of `InputFeatures`.
    seq_length: length of every feature's input lists.
    trim_padding: cut batches to their longest sequence (off TPU), with batch_by_length of
      examples of similar length (see input_pipeline.batch_features); the outputs hold real
      tokens only, in input order, so nothing written changes.

  Returns:
    input_fn(params) -> `tf.data.Dataset` of dicts with "unique_ids" [batch_size] and
    "input_ids", "input_mask", "input_type_ids" [batch_size, seq_length], all int32.
  """
  columns = {
      "unique_ids": [f.unique_id for f in features],
      "input_ids": [f.input_ids for f in features],
      "input_mask": [f.input_mask for f in features],
      "input_type_ids": [f.input_type_ids for f in features],
  }

  def input_fn(params):
    num_examples = len(features)
    # Constants in the graph: fine for the text files this script is meant for, and it keeps
    # the pipeline a TPU can run.
    dataset = tf.data.Dataset.from_tensor_slices({
        "unique_ids": tf.constant(columns["unique_ids"], shape=[num_examples], dtype=tf.int32),
        "input_ids": tf.constant(columns["input_ids"], shape=[num_examples, seq_length],
                                 dtype=tf.int32),
        "input_mask": tf.constant(columns["input_mask"], shape=[num_examples, seq_length],
                                  dtype=tf.int32),
        "input_type_ids": tf.constant(columns["input_type_ids"],
                                      shape=[num_examples, seq_length], dtype=tf.int32),
    })
    return input_pipeline.batch_features(
        dataset, params["batch_size"], is_training=False, drop_remainder=False,
        trim_padding=trim_padding, batch_by_length=batch_by_length,
        sequence_features=_SEQUENCE_FEATURES)

  return input_fn


def model_fn_builder(bert_config, init_checkpoint, layer_indexes, use_tpu,
                     use_one_hot_embeddings, options=None):
  """Returns a TPUEstimator `model_fn` that predicts the activations of `layer_indexes`.

  Predictions: "unique_id" [batch_size] and, for the j-th entry of `layer_indexes`,
  "layer_output_j" [batch_size, seq_length, hidden_size] float32 (seq_length is the batch's, cut
  with trim_padding), and "example_index" passed through when the input has it. `options`, the
  `estimator_setup.RunOptions` that make_estimator gets too, give the encoder's precision;
  None means the defaults with `use_tpu`.
  """
  options = estimator_setup.model_fn_options(options, use_tpu)
  compute_type = precision.compute_type_for(options.precision, use_tpu)

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    """The `model_fn` for TPUEstimator."""
    if mode != runner.ModeKeys.PREDICT:
      raise ValueError("Only PREDICT modes are supported: %s" % mode)
    model = modeling.BertModel(
        config=bert_config,
        is_training=False,
        input_ids=features["input_ids"],
        input_mask=features["input_mask"],
        token_type_ids=features["input_type_ids"],
        use_one_hot_embeddings=use_one_hot_embeddings,
        compute_type=compute_type)
    scaffold_fn = model_checks.init_from_checkpoint(init_checkpoint, use_tpu)

    all_layers = model.get_all_encoder_layers()
    predictions = {"unique_id": features["unique_ids"]}
    if "example_index" in features:
      predictions["example_index"] = features["example_index"]
    for j, layer_index in enumerate(layer_indexes):
      predictions["layer_output_%d" % j] = all_layers[layer_index]
    return runner.ModelSpec(
        mode=mode, predictions=predictions, scaffold_fn=scaffold_fn)

  return estimator_setup.built_for(model_fn, options)


def convert_examples_to_features(examples, seq_length, tokenizer):
  """Tokenizes `examples` into `InputFeatures` of `seq_length` ids, truncating long texts.

  A single text becomes [CLS] A [SEP] (type 0); a pair [CLS] A [SEP] B [SEP] with type 1 for
  B [SEP]. Padding has id 0, mask 0 and type 0.
  """
  features = []
  for ex_index, example in enumerate(examples):
    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = tokenizer.tokenize(example.text_b) if example.text_b else None
    if tokens_b:
      _truncate_seq_pair(tokens_a, tokens_b, seq_length - 3)  # [CLS], [SEP], [SEP]
    else:
      tokens_a = tokens_a[0:seq_length - 2]  # [CLS], [SEP]

    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    input_type_ids = [0] * len(tokens)
    if tokens_b:
      tokens += tokens_b + ["[SEP]"]
      input_type_ids += [1] * (len(tokens_b) + 1)
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    padding = [0] * (seq_length - len(input_ids))
    input_ids += padding
    input_mask += padding
    input_type_ids += padding

    if ex_index < _NUM_LOGGED_EXAMPLES:
      tf.logging.info("*** Example ***")
      tf.logging.info("unique_id: %s", example.unique_id)
      tf.logging.info("tokens: %s",
                      " ".join(tokenization.printable_text(token) for token in tokens))
      tf.logging.info("input_ids: %s", " ".join(str(x) for x in input_ids))
      tf.logging.info("input_mask: %s", " ".join(str(x) for x in input_mask))
      tf.logging.info("input_type_ids: %s", " ".join(str(x) for x in input_type_ids))

    features.append(InputFeatures(unique_id=example.unique_id, tokens=tokens,
                                  input_ids=input_ids, input_mask=input_mask,
                                  input_type_ids=input_type_ids))
  return features


def _truncate_seq_pair(tokens_a, tokens_b, max_length):
  """Truncates a token pair in place to at most `max_length` tokens in total.

  One token at a time comes off the end of the longer list, so a short text keeps all its
  tokens and the long one loses the most.
  """
  while len(tokens_a) + len(tokens_b) > max_length:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    longer.pop()


def read_examples(input_file):
  """Reads `InputExample`s from a text file, one per line; unique_id is the line number.

  An empty file gives none (and an empty output file, as in the original), with a warning.
  """
  examples = []
  with tf.io.gfile.GFile(input_file, "r") as reader:
    for unique_id, line in enumerate(reader):
      line = tokenization.convert_to_unicode(line).strip()
      match = _PAIR_PATTERN.match(line)
      if match is None:
        examples.append(InputExample(unique_id, line, None))
      else:
        examples.append(InputExample(unique_id, match.group(1), match.group(2)))
  if not examples:
    tf.logging.warning("--input_file: %s is empty; the output file will be too", input_file)
  return examples


def parse_layer_indexes(layers, num_hidden_layers):
  """Parses --layers ("-1,-2,0") into ints that index `num_hidden_layers` encoder layers.

  Raises:
    script_io.InputError: not a comma-separated list of ints, or a layer the model lacks.
  """
  try:
    layer_indexes = [int(x) for x in layers.split(",")]
  except ValueError:
    raise script_io.InputError(
        "--layers must be comma-separated integers like -1,-2,-3,-4, got %r" % layers)
  for layer_index in layer_indexes:
    if not -num_hidden_layers <= layer_index < num_hidden_layers:
      raise script_io.InputError(
          "--layers: the model has %d layers, so %d is out of range [%d, %d]" %
          (num_hidden_layers, layer_index, -num_hidden_layers, num_hidden_layers - 1))
  return layer_indexes


# The output values: json.dumps of round(x, 6) for float32 activations x, written here for whole
# matrices at once from integers. Why the characters are the same: x * 1e6 is exact in float64 (a
# 24-bit significand times 1e6 = 15625 * 2**6 needs at most 38 bits), so np.rint of it is the
# correctly rounded, ties-to-even k that round(x, 6) finds, and round returns the double nearest
# k / 1e6. Below 1000 that decimal has at most 9 significant digits, and doubles tell apart all
# decimals of up to 15, so its repr is the decimal itself without trailing zeros, positional
# from 1e-4 up; below 1e-4 repr writes an exponent (9.9e-05), taken from a table.
_SCALE = 10**6

# A value's characters in a record, NUL where its text has none: the sign, up to 3 whole digits,
# the point, the first and last 3 decimals, ", ". "number" overlaps whole to low, for the texts
# below 1e-4. Rows with a value of 1000 or more in magnitude, NaN or infinity go value by value.
_VALUE_RECORD = np.dtype({
    "names": ["sign", "whole", "point", "high", "low", "separator", "number"],
    "formats": ["S1", "S3", "S1", "S3", "S3", "S2", "S10"],
    "offsets": [0, 1, 4, 5, 8, 11, 1]})
_RECORD_LIMIT = 1000 * _SCALE
_WHOLE_TEXTS = np.array([b"%d" % i for i in range(1000)], "S3")
# The first 3 decimals: all of them, or at index + 1000 when no nonzero decimal follows, without
# their trailing zeros but one ("3.0", "3.5").
_HIGH_TEXTS = np.array([b"%03d" % i for i in range(1000)] +
                       [(b"%03d" % i).rstrip(b"0") or b"0" for i in range(1000)], "S3")
_LOW_TEXTS = np.array([(b"%03d" % i).rstrip(b"0") for i in range(1000)], "S3")
# json.dumps(k / 1e6) for |k| < 100, without the sign: "0.0", "1e-06" .. "9.9e-05".
_SMALL_LIMIT = 100
_SMALL_TEXTS = np.array([json.dumps(k / _SCALE).encode("ascii") for k in range(_SMALL_LIMIT)],
                        "S10")


def _python_value_text(row):
  """Writes a float row [hidden_size] as json.dumps writes its values rounded to 6 decimals."""
  return ", ".join(json.dumps(round(x, 6)) for x in row.tolist())


def rounded_value_texts(values):
  """Writes each row of `values` as json.dumps writes the row's values rounded to 6 decimals.

  Args:
    values: float32 array [num_tokens, hidden_size]. float16 is widened to float32 (exactly);
      float64 raises TypeError, as the characters are exact for float32 values only.

  Returns:
    A list of num_tokens strings, the i-th
    `", ".join(json.dumps(round(x, 6)) for x in values[i].tolist())`.
  """
  values = values.astype(np.float32, casting="safe", copy=False)
  scaled = np.rint(values.astype(np.float64) * _SCALE)
  magnitude = np.abs(scaled)
  fits = np.all(magnitude < _RECORD_LIMIT, axis=1)  # False for NaN and infinity
  whole, fraction = np.divmod(np.where(fits[:, None], magnitude, 0).astype(np.int32), _SCALE)
  high, low = np.divmod(fraction, 1000)

  records = np.zeros(values.shape, _VALUE_RECORD)
  records["sign"][np.signbit(scaled)] = b"-"  # -0.0 too, as round(x, 6) of a tiny negative x
  records["whole"] = _WHOLE_TEXTS[whole]
  records["point"] = b"."
  records["high"] = _HIGH_TEXTS[high + 1000 * (low == 0)]
  records["low"] = _LOW_TEXTS[low]
  records["separator"] = b", "
  small = magnitude < _SMALL_LIMIT
  records["number"][small] = _SMALL_TEXTS[magnitude[small].astype(np.int32)]
  records["separator"][:, -1] = b"\n"

  chars = records.view(np.uint8)
  texts = chars[chars != 0].tobytes().decode("ascii").split("\n")[:-1]
  for row in np.flatnonzero(~fits):
    texts[row] = _python_value_text(values[row])
  return texts


def feature_line(feature, result, layer_indexes):
  """The output line of one example, without its newline.

  Args:
    feature: the example's `InputFeatures`.
    result: its predictions; "layer_output_j" is float32 [seq_length, hidden_size], for the j-th
      entry of `layer_indexes`.
    layer_indexes: the --layers ints.

  Returns:
    The characters json.dumps writes for {"linex_index": unique_id, "features": [{"token": token,
    "layers": [{"index": layer_index, "values": [round(x, 6), ...]}, ...]}, ...]}, the original's
    line: every token with its values in every layer.
  """
  num_tokens = len(feature.tokens)
  layer_texts = [
      rounded_value_texts(result["layer_output_%d" % j][:num_tokens])
      for j in range(len(layer_indexes))]
  token_texts = []
  for i, token in enumerate(feature.tokens):
    layers = ", ".join('{"index": %d, "values": [%s]}' % (layer_index, texts[i])
                       for layer_index, texts in zip(layer_indexes, layer_texts))
    token_texts.append('{"token": %s, "layers": [%s]}' % (json.dumps(token), layers))
  return '{"linex_index": %d, "features": [%s]}' % (feature.unique_id, ", ".join(token_texts))


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)

  options = estimator_setup.RunOptions.from_flag_values(FLAGS.flag_values_dict())
  bert_config = model_checks.load_bert_config(FLAGS.bert_config_file, FLAGS.max_seq_length,
                                                 is_training=False)
  if FLAGS.max_seq_length < 3:
    raise script_io.InputError(
        "--max_seq_length=%d leaves no room for [CLS] A [SEP] B [SEP]" % FLAGS.max_seq_length)
  script_io.check_positive({"batch_size": FLAGS.batch_size})
  layer_indexes = parse_layer_indexes(FLAGS.layers, bert_config.num_hidden_layers)
  script_io.require_file(FLAGS.input_file, "input_file")
  tokenizer = script_io.load_tokenizer(FLAGS.vocab_file, FLAGS.do_lower_case,
                                       FLAGS.init_checkpoint)
  model_checks.check_vocab_fits_model(tokenizer.vocab, FLAGS.vocab_file, bert_config,
                                         FLAGS.bert_config_file)
  model_checks.check_init_checkpoint(FLAGS.init_checkpoint, bert_config)
  script_io.check_output_file(FLAGS.output_file, "output_file")

  examples = read_examples(FLAGS.input_file)
  features = convert_examples_to_features(
      examples=examples, seq_length=FLAGS.max_seq_length, tokenizer=tokenizer)
  unique_id_to_feature = {feature.unique_id: feature for feature in features}

  model_fn = model_fn_builder(
      bert_config=bert_config,
      init_checkpoint=FLAGS.init_checkpoint,
      layer_indexes=layer_indexes,
      use_tpu=options.use_tpu,
      use_one_hot_embeddings=FLAGS.use_one_hot_embeddings,
      options=options)
  # No model_dir: nothing is trained or saved, the weights come from --init_checkpoint.
  estimator = estimator_setup.make_estimator(model_fn, None, options,
                                             predict_batch_size=FLAGS.batch_size)
  input_fn = input_fn_builder(features=features, seq_length=FLAGS.max_seq_length,
                              trim_padding=options.trims_padding,
                              batch_by_length=options.batch_by_length)

  with script_io.atomic_output(FLAGS.output_file) as temporary:
    with tf.io.gfile.GFile(temporary, "w") as writer:
      for num_written, result in enumerate(
          input_pipeline.restore_input_order(
              estimator.predict(input_fn, yield_single_examples=True)), 1):
        feature = unique_id_to_feature[int(result["unique_id"])]
        writer.write(feature_line(feature, result, layer_indexes) + "\n")
        if num_written % 1000 == 0:
          tf.logging.info("Wrote %d of %d lines", num_written, len(features))
  tf.logging.info("Wrote %d lines to %s", len(features), FLAGS.output_file)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("vocab_file")
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("init_checkpoint")
  flags.mark_flag_as_required("output_file")
  script_io.run_main(main)
