"""What the scripts check a model against before anything is built, and set it up with.

The BERT config against the sequence length (`load_bert_config`) and the vocabulary
(`check_vocab_fits_model`); the checkpoints against the config, --init_checkpoint
(`check_init_checkpoint`) and the one --output_dir would resume from
(`check_output_dir_checkpoint`); and the initialisation from --init_checkpoint
(`init_from_checkpoint`). Each mistake is one `script_io.InputError` naming the flag and file.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import os
import re

import modeling
import script_io
import tensorflow.compat.v1 as tf


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
