# coding=utf-8
"""Converts BERT checkpoints between the Hugging Face layout and the original one.

Hugging Face layout: `model.safetensors` (PyTorch tensor names and [out, in] dense weights in
float32, float16 or bfloat16), `config.json`, and the tokenizer: `vocab.txt` or `tokenizer.json`,
with `tokenizer_config.json`. Original layout: `bert_model.ckpt.{index,data-*}` (TensorFlow
float32 variables named as `modeling.BertModel` creates them, [in, out] kernels),
`bert_config.json`, `vocab.txt` and, where the casing of the tokenizer is known,
`do_lower_case.json`, which the scripts' --do_lower_case must match. Converting one way and back
gives the same tensors bit for bit; float16 and bfloat16 weights come back as the float32 values
they widen to exactly.

Usage:
  python convert_hf_checkpoint.py --direction=hf_to_original \
    --input_dir=all-MiniLM-L6-v2 --output_dir=minilm_original

It prints the --do_lower_case the scripts must be run with. Library use:
`hf_to_original(hf_dir, output_dir)` and `original_to_hf(original_dir, output_dir)`. Writing the
Hugging Face layout needs the optional `safetensors` package (`pip install safetensors`); this
tool is its only user.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import contextlib
import json
import os
import struct

from absl import flags
import modeling
import numpy as np
import script_io
import tensorflow.compat.v1 as tf
import tokenization

HF_WEIGHTS_NAME = "model.safetensors"
HF_CONFIG_NAME = "config.json"
HF_TOKENIZER_NAME = "tokenizer.json"
HF_TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
ORIGINAL_CHECKPOINT_NAME = "bert_model.ckpt"
ORIGINAL_CONFIG_NAME = "bert_config.json"
VOCAB_NAME = "vocab.txt"

FLAGS = flags.FLAGS

# Hugging Face's BertConfig defaults, which it applies to fields a config.json leaves out.
_HF_CONFIG_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}

# The weight dtypes of a safetensors file that widen to float32 exactly, with the numpy dtype of
# their little-endian bytes; numpy has no bfloat16, so its 16-bit patterns are read as integers.
_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}

# The special tokens of the original tokenizer and scripts, under transformers' names.
_SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "cls_token": "[CLS]", "mask_token": "[MASK]"}

# The original WordpieceTokenizer marks a piece that continues a word with this prefix.
_CONTINUING_PIECE_PREFIX = "##"

# The original LayerNorm divides by sqrt(variance + 1e-12); no other epsilon can be expressed.
_LAYER_NORM_EPS = 1e-12

# Hugging Face "gelu" is the exact erf form; the original "gelu" is the tanh approximation.
_HF_TO_ORIGINAL_ACTIVATION = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
    "tanh": "tanh",
}
_ORIGINAL_TO_HF_ACTIVATION = {
    "gelu_exact": "gelu",
    "gelu": "gelu_new",
    "relu": "relu",
    "tanh": "tanh",
}

# (Hugging Face name, original name, original shape in config letters). The letters: V
# vocab_size, P max_position_embeddings, T type_vocab_size, H hidden_size, I
# intermediate_size, L any number of labels. Dense `.weight`s are stored [out, in] by PyTorch
# and as [in, out] `kernel`s by the original, so every `/kernel` is the transposed weight.
_EMBEDDING_NAMES = (
    ("embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings", "V H"),
    ("embeddings.position_embeddings.weight", "bert/embeddings/position_embeddings", "P H"),
    ("embeddings.token_type_embeddings.weight", "bert/embeddings/token_type_embeddings", "T H"),
    ("embeddings.LayerNorm.weight", "bert/embeddings/LayerNorm/gamma", "H"),
    ("embeddings.LayerNorm.bias", "bert/embeddings/LayerNorm/beta", "H"),
)

# Names inside one encoder layer, after "encoder.layer.N." and "bert/encoder/layer_N/".
_LAYER_NAMES = (
    ("attention.self.query.weight", "attention/self/query/kernel", "H H"),
    ("attention.self.query.bias", "attention/self/query/bias", "H"),
    ("attention.self.key.weight", "attention/self/key/kernel", "H H"),
    ("attention.self.key.bias", "attention/self/key/bias", "H"),
    ("attention.self.value.weight", "attention/self/value/kernel", "H H"),
    ("attention.self.value.bias", "attention/self/value/bias", "H"),
    ("attention.output.dense.weight", "attention/output/dense/kernel", "H H"),
    ("attention.output.dense.bias", "attention/output/dense/bias", "H"),
    ("attention.output.LayerNorm.weight", "attention/output/LayerNorm/gamma", "H"),
    ("attention.output.LayerNorm.bias", "attention/output/LayerNorm/beta", "H"),
    ("intermediate.dense.weight", "intermediate/dense/kernel", "H I"),
    ("intermediate.dense.bias", "intermediate/dense/bias", "I"),
    ("output.dense.weight", "output/dense/kernel", "I H"),
    ("output.dense.bias", "output/dense/bias", "H"),
    ("output.LayerNorm.weight", "output/LayerNorm/gamma", "H"),
    ("output.LayerNorm.bias", "output/LayerNorm/beta", "H"),
)

# Hugging Face's BertModel without a pooler (e.g. inside BertForMaskedLM) leaves these out.
_POOLER_NAMES = (
    ("pooler.dense.weight", "bert/pooler/dense/kernel", "H H"),
    ("pooler.dense.bias", "bert/pooler/dense/bias", "H"),
)

# Task heads. Output weights of the original heads are [labels, H], multiplied with
# transpose_b, so they keep PyTorch's layout.
_HEAD_NAMES = (
    ("cls.predictions.transform.dense.weight", "cls/predictions/transform/dense/kernel", "H H"),
    ("cls.predictions.transform.dense.bias", "cls/predictions/transform/dense/bias", "H"),
    ("cls.predictions.transform.LayerNorm.weight", "cls/predictions/transform/LayerNorm/gamma",
     "H"),
    ("cls.predictions.transform.LayerNorm.bias", "cls/predictions/transform/LayerNorm/beta", "H"),
    ("cls.predictions.bias", "cls/predictions/output_bias", "V"),
    ("cls.seq_relationship.weight", "cls/seq_relationship/output_weights", "2 H"),
    ("cls.seq_relationship.bias", "cls/seq_relationship/output_bias", "2"),
    ("classifier.weight", "output_weights", "L H"),
    ("classifier.bias", "output_bias", "L"),
    ("qa_outputs.weight", "cls/squad/output_weights", "2 H"),
    ("qa_outputs.bias", "cls/squad/output_bias", "2"),
)

# Hugging Face's BertForTokenClassification names its head as the sequence classifier does;
# run_ner.py's tagging head has names of its own. config.json's "architectures" tells them apart.
_TOKEN_CLASSIFICATION = "BertForTokenClassification"
_TOKEN_CLASSIFICATION_HEAD_NAMES = (
    ("classifier.weight", "cls/ner/output_weights", "L H"),
    ("classifier.bias", "cls/ner/output_bias", "L"),
)

# Hugging Face task models hold the encoder under this prefix; a bare BertModel does not.
_HF_ENCODER_PREFIX = "bert."

# Copies of tied tensors that some files hold: the masked-LM decoder shares the word embeddings
# and `cls.predictions.bias`. The original layout stores each tensor once.
_TIED_COPIES = (
    ("cls.predictions.decoder.weight", "bert/embeddings/word_embeddings", "V H"),
    ("cls.predictions.decoder.bias", "cls/predictions/output_bias", "V"),
)

# What a training run saves next to the model: step counter and AdamWeightDecay slots.
_TRAINING_STATE_SUFFIXES = ("/adam_m", "/adam_v")
_GLOBAL_STEP = "global_step"


def _encoder_name_table(num_hidden_layers):
  """Returns (Hugging Face name, original name, shape letters) of embeddings and layers."""
  table = list(_EMBEDDING_NAMES)
  for layer in range(num_hidden_layers):
    for hf_name, original_name, shape in _LAYER_NAMES:
      table.append(("encoder.layer.%d.%s" % (layer, hf_name),
                    "bert/encoder/layer_%d/%s" % (layer, original_name), shape))
  return table


def _expected_shape(letters, bert_config):
  """Turns shape letters like "V H" into a list of ints; None stands for any size (L)."""
  sizes = {
      "V": bert_config["vocab_size"],
      "P": bert_config["max_position_embeddings"],
      "T": bert_config["type_vocab_size"],
      "H": bert_config["hidden_size"],
      "I": bert_config["intermediate_size"],
      "L": None,
      "2": 2,
  }
  return [sizes[letter] for letter in letters.split()]


def _check_shape(name, shape, letters, bert_config, config_file):
  expected = _expected_shape(letters, bert_config)
  if len(shape) != len(expected) or any(
      size is not None and size != actual for size, actual in zip(expected, shape)):
    raise script_io.InputError(
        "%s has shape %s but %s implies %s" %
        (name, list(shape), config_file, ["any" if s is None else s for s in expected]))


def _is_kernel(original_name):
  return original_name.endswith("/kernel")


def _require_input(directory, file_name):
  path = os.path.join(directory, file_name)
  if not tf.io.gfile.exists(path):
    raise script_io.InputError("no %s in %s" % (file_name, directory))
  return path


def _import_safetensors_numpy():
  try:
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise script_io.InputError(
        "the Hugging Face layout needs the safetensors package: pip install safetensors")
  return safetensors.numpy


def _read_json(path):
  with tf.io.gfile.GFile(path, "r") as reader:
    text = reader.read()
  try:
    value = json.loads(text)
  except ValueError as error:
    raise script_io.InputError("%s is not valid JSON: %s" % (path, error))
  if not isinstance(value, dict):
    raise script_io.InputError("%s must hold a JSON object" % path)
  return value


def _read_json_if_present(path):
  return _read_json(path) if tf.io.gfile.exists(path) else None


def _write_json(value, path):
  with tf.io.gfile.GFile(path, "w") as writer:
    writer.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def _read_safetensors(path):
  """Reads a safetensors file into name -> (dtype, shape, bytes), converting nothing yet.

  The format: the length of a JSON header as 8 little-endian bytes; the header, which maps each
  tensor name to its "dtype", "shape" and "data_offsets" [begin, end) into the bytes that follow
  it; those bytes. Read here because `safetensors.numpy` cannot load bfloat16.

  Returns:
    dict: tensor name -> (dtype such as "BF16", shape as a list of ints, memoryview of the
    tensor's little-endian bytes).

  Raises:
    script_io.InputError: the file is not in this format.
  """
  with tf.io.gfile.GFile(path, "rb") as reader:
    contents = reader.read()
  if len(contents) < 8:
    raise script_io.InputError("%s is not a safetensors file: it has %d bytes" %
                               (path, len(contents)))
  (header_length,) = struct.unpack("<Q", contents[:8])
  try:
    header = json.loads(contents[8:8 + header_length])
  except ValueError:
    header = None
  if not isinstance(header, dict):
    raise script_io.InputError("%s is not a safetensors file: no JSON header" % path)
  data = memoryview(contents)[8 + header_length:]
  tensors = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
      valid = (isinstance(dtype, str) and
               all(isinstance(n, int) and n >= 0 for n in shape + [begin, end]) and
               begin <= end <= len(data))
    except (KeyError, TypeError, ValueError):
      valid = False
    if not valid:
      raise script_io.InputError("%s: the header entry of %r is malformed" % (path, name))
    tensors[name] = (dtype, shape, data[begin:end])
  return tensors


def _float32_tensor(stored_tensor, name, weights_file):
  """Returns a tensor of `_read_safetensors` as float32; float16 and bfloat16 widen exactly.

  Raises:
    script_io.InputError: the tensor is not float32, float16 or bfloat16, or its bytes do not
      fill its shape.
  """
  dtype, shape, data = stored_tensor
  if dtype not in _SAFETENSORS_DTYPES:
    raise script_io.InputError(
        "%s: tensor %r is %s; only F32, F16 and BF16 weights can be converted" %
        (weights_file, name, dtype))
  stored_dtype = np.dtype(_SAFETENSORS_DTYPES[dtype])
  num_bytes = stored_dtype.itemsize * int(np.prod(shape))
  if len(data) != num_bytes:
    raise script_io.InputError("%s: tensor %r has %d bytes, but %s %s takes %d" %
                               (weights_file, name, len(data), dtype, shape, num_bytes))
  values = np.frombuffer(data, stored_dtype).reshape(shape)
  if dtype == "BF16":
    # A bfloat16 is the upper half of a float32: its sign, its exponent, its 7 leading mantissa
    # bits.
    return (values.astype(np.uint32) << 16).view(np.float32)
  return values.astype(np.float32)


def _wordpiece_tokens(tokenizer, tokenizer_file):
  """Returns the vocabulary of a tokenizer.json's WordPiece model as a list of tokens in id order.

  Raises:
    script_io.InputError: the model is not WordPiece with "##" continuing pieces, or its
      token ids are not 0, 1, ..., N-1.
  """
  model = tokenizer.get("model")
  if not isinstance(model, dict) or model.get("type") != "WordPiece":
    raise script_io.InputError(
        "%s: the tokenizer model is %r; BERT needs a WordPiece vocabulary" %
        (tokenizer_file, model.get("type") if isinstance(model, dict) else model))
  prefix = model.get("continuing_subword_prefix", _CONTINUING_PIECE_PREFIX)
  if prefix != _CONTINUING_PIECE_PREFIX:
    raise script_io.InputError(
        "%s: continuing_subword_prefix is %r; the original tokenizer marks continuing pieces "
        "with %r" % (tokenizer_file, prefix, _CONTINUING_PIECE_PREFIX))
  vocab = model.get("vocab")
  if not isinstance(vocab, dict):
    raise script_io.InputError("%s: model.vocab is not an object of tokens and ids" %
                               tokenizer_file)
  tokens = [None] * len(vocab)
  for token, token_id in vocab.items():
    if not isinstance(token_id, int) or not 0 <= token_id < len(tokens):
      raise script_io.InputError(
          "%s: token %r has id %r, but the ids of %d tokens must be 0 to %d" %
          (tokenizer_file, token, token_id, len(tokens), len(tokens) - 1))
    if tokens[token_id] is not None:
      raise script_io.InputError("%s: tokens %r and %r both have id %d" %
                                 (tokenizer_file, tokens[token_id], token, token_id))
    tokens[token_id] = token
  return tokens


def _check_vocabularies_agree(vocab_file, tokenizer_file, tokens):
  """Raises InputError unless the scripts, reading vocab_file, give each token its id in `tokens`.

  Args:
    vocab_file: a vocab.txt, read as `tokenization.load_vocab` reads it.
    tokenizer_file: the tokenizer.json `tokens` came from, for the message.
    tokens: list of tokens in id order (`_wordpiece_tokens`).
  """
  try:
    vocab_tokens = list(tokenization.load_vocab(vocab_file))
  except ValueError as error:
    raise script_io.InputError(str(error)) from None
  for token_id, (in_vocab, in_tokenizer) in enumerate(zip(vocab_tokens, tokens)):
    if in_vocab != in_tokenizer:
      raise script_io.InputError(
          "%s and %s disagree: id %d is %r in the first, %r in the second" %
          (vocab_file, tokenizer_file, token_id, in_vocab, in_tokenizer))
  if len(vocab_tokens) != len(tokens):
    raise script_io.InputError("%s and %s disagree: %d tokens against %d" %
                               (vocab_file, tokenizer_file, len(vocab_tokens), len(tokens)))


def _stated_bool(value, where):
  if not isinstance(value, bool):
    raise script_io.InputError("%s must be true or false, got %r" % (where, value))
  return value


def _hf_stated_casings(hf_dir, tokenizer, tokenizer_file):
  """Returns [(where, do_lower_case)] for each Hugging Face tokenizer file that states a casing.

  Args:
    hf_dir: the folder; its tokenizer_config.json, if any, states `do_lower_case`.
    tokenizer: dict of its tokenizer.json, or None; a BertNormalizer states `lowercase`.
    tokenizer_file: the path of tokenizer.json, for messages.
  """
  stated = []
  tokenizer_config_file = os.path.join(hf_dir, HF_TOKENIZER_CONFIG_NAME)
  tokenizer_config = _read_json_if_present(tokenizer_config_file) or {}
  if tokenizer_config.get("do_lower_case") is not None:
    stated.append((tokenizer_config_file, _stated_bool(
        tokenizer_config["do_lower_case"], "%s: do_lower_case" % tokenizer_config_file)))
  normalizer = (tokenizer or {}).get("normalizer")
  if (isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer" and
      normalizer.get("lowercase") is not None):
    stated.append(("the normalizer of %s" % tokenizer_file, _stated_bool(
        normalizer["lowercase"], "%s: normalizer.lowercase" % tokenizer_file)))
  return stated


def _settle_casing(stated, do_lower_case):
  """Returns whether the model's tokenizer lower-cases: as its files say, or `do_lower_case`.

  Args:
    stated: [(where, do_lower_case)] for each file or name that states a casing, the one that
      decides first (transformers follows tokenizer_config.json over tokenizer.json).
    do_lower_case: this tool's --do_lower_case, or None. It decides where the sources say
      nothing or disagree, and may not contradict sources that agree.

  Returns:
    True or False, or None where neither the sources nor `do_lower_case` say.

  Raises:
    script_io.InputError: `do_lower_case` contradicts every source.
  """
  if not stated:
    return do_lower_case
  where, casing = stated[0]
  if do_lower_case is not None:
    if all(other_casing != do_lower_case for _, other_casing in stated):
      raise script_io.InputError("--do_lower_case=%s contradicts %s, which says do_lower_case=%s"
                                 % (do_lower_case, where, casing))
    return do_lower_case
  for other_where, other_casing in stated[1:]:
    if other_casing != casing:
      tf.logging.warning("%s says do_lower_case=%s but %s says %s; going by the first (pass "
                         "--do_lower_case to choose)", where, casing, other_where, other_casing)
  return casing


def _tokenizer_config(do_lower_case, bert_config):
  """Returns the tokenizer_config.json that makes transformers tokenize as the original does."""
  tokenizer_config = dict(_SPECIAL_TOKENS)
  tokenizer_config["do_lower_case"] = do_lower_case
  tokenizer_config["tokenizer_class"] = "BertTokenizer"
  tokenizer_config["model_max_length"] = bert_config["max_position_embeddings"]
  return tokenizer_config


def _check_bert_config(bert_config, config_file):
  """Raises InputError unless `bert_config` has every field and a BertModel can be built."""
  missing = [field for field in _HF_CONFIG_DEFAULTS if field not in bert_config]
  if missing:
    raise script_io.InputError("%s has no %s" % (config_file, ", ".join(missing)))
  try:
    modeling.BertConfig.from_dict(bert_config).validate()
  except ValueError as error:
    raise script_io.InputError("%s: %s" % (config_file, error))


def hf_config_to_bert_config(hf_config, config_file="config.json"):
  """Translates a Hugging Face BERT config.json dict into a bert_config.json dict.

  Raises:
    script_io.InputError: the model uses something the original BertModel cannot compute: an
      unknown activation, a LayerNorm epsilon other than 1e-12, relative position embeddings.
  """
  position_embedding_type = hf_config.get("position_embedding_type", "absolute")
  if position_embedding_type != "absolute":
    raise script_io.InputError(
        "%s: position_embedding_type %r is not supported; the original BERT has absolute "
        "position embeddings" % (config_file, position_embedding_type))
  layer_norm_eps = hf_config.get("layer_norm_eps", _LAYER_NORM_EPS)
  if layer_norm_eps != _LAYER_NORM_EPS:
    raise script_io.InputError(
        "%s: layer_norm_eps=%r is not supported; the original BERT LayerNorm uses %r" %
        (config_file, layer_norm_eps, _LAYER_NORM_EPS))
  bert_config = {field: hf_config.get(field, default)
                 for field, default in _HF_CONFIG_DEFAULTS.items()}
  hf_act = bert_config["hidden_act"]
  if hf_act not in _HF_TO_ORIGINAL_ACTIVATION:
    raise script_io.InputError(
        "%s: hidden_act %r is not supported; supported are %s" %
        (config_file, hf_act, ", ".join(sorted(_HF_TO_ORIGINAL_ACTIVATION))))
  bert_config["hidden_act"] = _HF_TO_ORIGINAL_ACTIVATION[hf_act]
  return bert_config


def bert_config_to_hf_config(bert_config, architecture, num_labels=None,
                             config_file="bert_config.json"):
  """Translates a bert_config.json dict into a Hugging Face config.json dict.

  Args:
    bert_config: dict read from bert_config.json.
    architecture: Hugging Face model class the weights are laid out for, e.g. "BertModel".
    num_labels: number of classifier outputs, for "BertForSequenceClassification" and
      "BertForTokenClassification".
    config_file: the file `bert_config` came from, for error messages.

  Raises:
    script_io.InputError: the activation has no Hugging Face name.
  """
  hf_config = {field: bert_config[field] for field in _HF_CONFIG_DEFAULTS}
  act = str(bert_config["hidden_act"]).lower()
  if act not in _ORIGINAL_TO_HF_ACTIVATION:
    raise script_io.InputError(
        "%s: hidden_act %r has no Hugging Face equivalent; supported are %s" %
        (config_file, bert_config["hidden_act"], ", ".join(sorted(_ORIGINAL_TO_HF_ACTIVATION))))
  hf_config["hidden_act"] = _ORIGINAL_TO_HF_ACTIVATION[act]
  hf_config["layer_norm_eps"] = _LAYER_NORM_EPS
  hf_config["model_type"] = "bert"
  hf_config["position_embedding_type"] = "absolute"
  hf_config["architectures"] = [architecture]
  if num_labels is not None:
    hf_config["id2label"] = {str(i): "LABEL_%d" % i for i in range(num_labels)}
    hf_config["label2id"] = {"LABEL_%d" % i: i for i in range(num_labels)}
  return hf_config


def _hf_architecture(original_names):
  """Names the Hugging Face class whose state dict holds the given original variables."""
  if "output_weights" in original_names:
    return "BertForSequenceClassification"
  if "cls/ner/output_weights" in original_names:
    return _TOKEN_CLASSIFICATION
  if "cls/squad/output_weights" in original_names:
    return "BertForQuestionAnswering"
  has_masked_lm = "cls/predictions/output_bias" in original_names
  has_next_sentence = "cls/seq_relationship/output_weights" in original_names
  if has_masked_lm and has_next_sentence:
    return "BertForPreTraining"
  if has_masked_lm:
    return "BertForMaskedLM"
  if has_next_sentence:
    return "BertForNextSentencePrediction"
  return "BertModel"


@contextlib.contextmanager
def _atomic_output_dir(output_dir):
  """Yields a new temporary folder that becomes `output_dir` when the block completes.

  Raises:
    script_io.InputError: `output_dir` exists and is not empty.
  """
  if tf.io.gfile.exists(output_dir) and tf.io.gfile.listdir(output_dir):
    raise script_io.InputError("output folder %s exists and is not empty" % output_dir)
  with script_io.atomic_output(output_dir) as temporary:
    tf.io.gfile.makedirs(temporary)
    yield temporary


def _hf_vocab_tokens(hf_dir, tokenizer, tokenizer_file):
  """Returns None where `hf_dir` has a vocab.txt, else the tokens of its tokenizer.json in id order.

  Raises:
    script_io.InputError: there is neither, or vocab.txt and tokenizer.json disagree.
  """
  vocab_file = os.path.join(hf_dir, VOCAB_NAME)
  tokens = _wordpiece_tokens(tokenizer, tokenizer_file) if tokenizer is not None else None
  if tf.io.gfile.exists(vocab_file):
    if tokens is not None:
      _check_vocabularies_agree(vocab_file, tokenizer_file, tokens)
    return None
  if tokens is None:
    raise script_io.InputError("no %s and no %s in %s" % (VOCAB_NAME, HF_TOKENIZER_NAME, hf_dir))
  return tokens


def hf_to_original(hf_dir, output_dir, do_lower_case=None):
  """Converts a Hugging Face BERT folder into the original layout.

  Args:
    hf_dir: folder with model.safetensors (float32, float16 or bfloat16), config.json, and
      vocab.txt or tokenizer.json (a BertModel or a BertFor* task model: pre-training heads,
      sequence or token classification, question answering). tokenizer_config.json's
      do_lower_case, or else tokenizer.json's normalizer, tells whether the tokenizer
      lower-cases.
    output_dir: new or empty folder; receives bert_model.ckpt.{index,data-*},
      bert_config.json, vocab.txt and, where the casing is known, do_lower_case.json, all at
      once. vocab.txt is hf_dir's own, else tokenizer.json's vocabulary in id order.
    do_lower_case: the casing, for a folder that does not say it or whose files disagree;
      None to go by the folder.

  Returns:
    The --do_lower_case the scripts must be run with: the casing of the folder, else True, as
    transformers' BertTokenizer defaults to lower-casing.

  Raises:
    script_io.InputError: missing file, a tensor name this converter does not know, a weight
      dtype other than float32, float16 and bfloat16, a shape that contradicts config.json, a
      config the original BertModel cannot compute, a tokenizer that is not WordPiece, a
      vocab.txt and tokenizer.json that disagree, or a do_lower_case that contradicts the
      folder.
  """
  weights_file = _require_input(hf_dir, HF_WEIGHTS_NAME)
  config_file = _require_input(hf_dir, HF_CONFIG_NAME)
  hf_config = _read_json(config_file)
  bert_config = hf_config_to_bert_config(hf_config, config_file)
  _check_bert_config(bert_config, config_file)
  tokenizer_file = os.path.join(hf_dir, HF_TOKENIZER_NAME)
  tokenizer = _read_json_if_present(tokenizer_file)
  vocab_tokens = _hf_vocab_tokens(hf_dir, tokenizer, tokenizer_file)
  casing = _settle_casing(_hf_stated_casings(hf_dir, tokenizer, tokenizer_file), do_lower_case)
  hf_tensors = _read_safetensors(weights_file)

  encoder_table = _encoder_name_table(bert_config["num_hidden_layers"])
  table = {hf_name: (original_name, shape)
           for hf_name, original_name, shape in encoder_table + list(_POOLER_NAMES)}
  heads = {hf_name: (original_name, shape)
           for hf_name, original_name, shape in _HEAD_NAMES + _TIED_COPIES}
  if _TOKEN_CLASSIFICATION in (hf_config.get("architectures") or []):
    heads.update((hf_name, (original_name, shape))
                 for hf_name, original_name, shape in _TOKEN_CLASSIFICATION_HEAD_NAMES)
  original_tensors = {}
  sources = {}
  for hf_name, stored_tensor in sorted(hf_tensors.items()):
    if hf_name.endswith("embeddings.position_ids"):
      continue  # A buffer of 0, 1, 2, ...: the original computes positions itself.
    if hf_name in heads:
      original_name, shape = heads[hf_name]
    else:
      encoder_name = hf_name
      if encoder_name.startswith(_HF_ENCODER_PREFIX):
        encoder_name = encoder_name[len(_HF_ENCODER_PREFIX):]
      if encoder_name not in table:
        raise script_io.InputError(
            "%s: unknown tensor %r (%s has num_hidden_layers=%d)" %
            (weights_file, hf_name, config_file, bert_config["num_hidden_layers"]))
      original_name, shape = table[encoder_name]
    value = _float32_tensor(stored_tensor, hf_name, weights_file)
    if _is_kernel(original_name):
      value = value.T
    _check_shape(hf_name, value.shape, shape, bert_config, config_file)
    if original_name in original_tensors:
      if not np.array_equal(original_tensors[original_name], value):
        raise script_io.InputError(
            "%s: %s and %s differ but both are %s in the original layout" %
            (weights_file, sources[original_name], hf_name, original_name))
      continue
    original_tensors[original_name] = value
    sources[original_name] = hf_name

  missing = [hf_name for hf_name, original_name, _ in encoder_table
             if original_name not in original_tensors]
  if missing:
    raise script_io.InputError(
        "%s lacks %d encoder tensors, e.g. %s" % (weights_file, len(missing), missing[0]))
  if _POOLER_NAMES[0][1] not in original_tensors:
    tf.logging.warning("%s has no pooler; bert/pooler/* will start from initializers",
                       weights_file)

  with _atomic_output_dir(output_dir) as temporary:
    _write_checkpoint(original_tensors, os.path.join(temporary, ORIGINAL_CHECKPOINT_NAME))
    _write_json(bert_config, os.path.join(temporary, ORIGINAL_CONFIG_NAME))
    if vocab_tokens is None:
      tf.io.gfile.copy(os.path.join(hf_dir, VOCAB_NAME), os.path.join(temporary, VOCAB_NAME))
    else:
      with tf.io.gfile.GFile(os.path.join(temporary, VOCAB_NAME), "w") as writer:
        writer.write("".join(token + "\n" for token in vocab_tokens))
    if casing is not None:
      _write_json({"do_lower_case": casing}, os.path.join(temporary, script_io.CASING_FILE_NAME))
  tf.logging.info("Wrote %d variables to %s", len(original_tensors), output_dir)
  if casing is None:
    tf.logging.warning(
        "%s does not say whether its tokenizer lower-cases; transformers would lower-case, so "
        "the scripts should too (pass this tool --do_lower_case=false for a cased model)",
        hf_dir)
    return True
  return casing


def _write_checkpoint(tensors, checkpoint_path):
  """Saves name -> numpy array as a TF checkpoint whose variable names are exactly the keys."""
  with tf.Graph().as_default():
    variables = {}
    feed_dict = {}
    for name, value in tensors.items():
      # Fed, not embedded as constants: a GraphDef cannot exceed 2 GB.
      initial_value = tf.placeholder(tf.float32, value.shape)
      variables[name] = tf.Variable(initial_value, name=name)
      feed_dict[initial_value] = value
    saver = tf.train.Saver(variables)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer(), feed_dict)
      saver.save(session, checkpoint_path, write_meta_graph=False, write_state=False)


def _find_checkpoint(original_dir):
  """Returns bert_model.ckpt in `original_dir`, else the folder's latest training checkpoint."""
  checkpoint_path = os.path.join(original_dir, ORIGINAL_CHECKPOINT_NAME)
  if tf.io.gfile.exists(checkpoint_path + ".index"):
    return checkpoint_path
  latest = tf.train.latest_checkpoint(original_dir)
  if latest is None:
    raise script_io.InputError(
        "no %s.index and no training checkpoint in %s" % (ORIGINAL_CHECKPOINT_NAME, original_dir))
  return latest


def _original_casing(original_dir, checkpoint_path, do_lower_case):
  """Returns the casing of an original-layout folder, from its records or the flag, else True.

  The casing is the one do_lower_case.json records, or the one a Google checkpoint's folder name
  tells; `do_lower_case` (this tool's flag) where neither says; else True, the default of the
  scripts' --do_lower_case.
  """
  stated = []
  recorded = script_io.read_recorded_casing(original_dir)
  if recorded is not None:
    stated.append((os.path.join(original_dir, script_io.CASING_FILE_NAME), recorded))
  google_casing = tokenization.checkpoint_do_lower_case(checkpoint_path)
  if google_casing is not None:
    stated.append(("the Google model name in %s" % checkpoint_path, google_casing))
  casing = _settle_casing(stated, do_lower_case)
  if casing is None:
    tf.logging.warning(
        "%s does not say whether its tokenizer lower-cases; writing do_lower_case=true, the "
        "scripts' default (pass this tool --do_lower_case=false for a cased model)",
        original_dir)
    return True
  return casing


def original_to_hf(original_dir, output_dir, do_lower_case=None):
  """Converts an original-layout BERT folder into the Hugging Face layout.

  Args:
    original_dir: folder with bert_config.json, vocab.txt and bert_model.ckpt.* (a released
      model) or a training checkpoint (the output_dir of a fine-tuning run, with bert_config.json
      and vocab.txt copied in); optimizer slots and global_step are left out.
    output_dir: new or empty folder; receives model.safetensors, config.json, vocab.txt and
      tokenizer_config.json, all at once. With task heads the encoder tensors get the "bert."
      prefix of Hugging Face's task models and config.json names the matching class (e.g.
      BertForSequenceClassification); without, it is a plain BertModel.
    do_lower_case: the casing, for a folder that does not say it (no do_lower_case.json, not a
      Google model name); None to go by the folder, else lower-case.

  Returns:
    The do_lower_case written to tokenizer_config.json.

  Raises:
    script_io.InputError: missing file, a variable this converter does not know, a shape that
      contradicts bert_config.json, an activation with no Hugging Face name, or a casing that
      contradicts the folder.
  """
  config_file = _require_input(original_dir, ORIGINAL_CONFIG_NAME)
  vocab_file = _require_input(original_dir, VOCAB_NAME)
  checkpoint_path = _find_checkpoint(original_dir)
  bert_config = _read_json(config_file)
  _check_bert_config(bert_config, config_file)
  casing = _original_casing(original_dir, checkpoint_path, do_lower_case)
  safetensors_numpy = _import_safetensors_numpy()

  encoder_table = _encoder_name_table(bert_config["num_hidden_layers"])
  encoder = {original_name: (hf_name, shape)
             for hf_name, original_name, shape in encoder_table + list(_POOLER_NAMES)}
  heads = {original_name: (hf_name, shape) for hf_name, original_name, shape in
           _HEAD_NAMES + _TOKEN_CLASSIFICATION_HEAD_NAMES}
  reader = tf.train.load_checkpoint(checkpoint_path)
  original_shapes = reader.get_variable_to_shape_map()
  original_names = sorted(
      name for name in original_shapes
      if name != _GLOBAL_STEP and not name.endswith(_TRAINING_STATE_SUFFIXES))
  unknown = [name for name in original_names if name not in encoder and name not in heads]
  if unknown:
    raise script_io.InputError(
        "%s: unknown variable %r (%s has num_hidden_layers=%d)" %
        (checkpoint_path, unknown[0], config_file, bert_config["num_hidden_layers"]))
  missing = [name for _, name, _ in encoder_table if name not in original_names]
  if missing:
    raise script_io.InputError(
        "%s lacks %d encoder variables, e.g. %s" % (checkpoint_path, len(missing), missing[0]))
  classifier_weights = [name for name in ("output_weights", "cls/ner/output_weights")
                        if name in original_shapes]
  num_labels = original_shapes[classifier_weights[0]][0] if classifier_weights else None
  hf_config = bert_config_to_hf_config(
      bert_config, _hf_architecture(original_names), num_labels, config_file)

  has_heads = any(name in heads for name in original_names)
  hf_tensors = {}
  for original_name in original_names:
    if original_name in heads:
      hf_name, shape = heads[original_name]
    else:
      hf_name, shape = encoder[original_name]
      if has_heads:
        hf_name = _HF_ENCODER_PREFIX + hf_name
    value = reader.get_tensor(original_name)
    _check_shape(original_name, value.shape, shape, bert_config, config_file)
    if _is_kernel(original_name):
      value = value.T
    hf_tensors[hf_name] = np.ascontiguousarray(value, dtype=np.float32)

  with _atomic_output_dir(output_dir) as temporary:
    # Transformers refuses safetensors files whose metadata does not name their framework.
    serialized = safetensors_numpy.save(hf_tensors, metadata={"format": "pt"})
    with tf.io.gfile.GFile(os.path.join(temporary, HF_WEIGHTS_NAME), "wb") as writer:
      writer.write(serialized)
    _write_json(hf_config, os.path.join(temporary, HF_CONFIG_NAME))
    tf.io.gfile.copy(vocab_file, os.path.join(temporary, VOCAB_NAME))
    _write_json(_tokenizer_config(casing, bert_config),
                os.path.join(temporary, HF_TOKENIZER_CONFIG_NAME))
  tf.logging.info("Wrote %d tensors to %s", len(hf_tensors), output_dir)
  return casing


_CONVERSIONS = {"hf_to_original": hf_to_original, "original_to_hf": original_to_hf}


def define_flags():
  """Defines the command-line flags.

  Called only when run as a script: other scripts import this module and define an
  --output_dir of their own.
  """
  flags.DEFINE_string("direction", None, "hf_to_original or original_to_hf.")
  flags.DEFINE_string("input_dir", None, "Folder of the checkpoint to convert.")
  flags.DEFINE_string("output_dir", None, "New or empty folder for the converted checkpoint.")
  flags.DEFINE_bool(
      "do_lower_case", None,
      "Whether the model's tokenizer lower-cases, for an input folder that does not say (or "
      "whose files disagree); it may not contradict the folder.")


def main(_):
  tf.logging.set_verbosity(tf.logging.INFO)
  if FLAGS.direction not in _CONVERSIONS:
    raise script_io.InputError(
        "--direction must be one of %s, got %r" % (", ".join(sorted(_CONVERSIONS)),
                                                   FLAGS.direction))
  if not FLAGS.input_dir or not tf.io.gfile.isdir(FLAGS.input_dir):
    raise script_io.InputError("--input_dir: no such folder: %s" % FLAGS.input_dir)
  if not FLAGS.output_dir:
    raise script_io.InputError("--output_dir is required")
  do_lower_case = _CONVERSIONS[FLAGS.direction](FLAGS.input_dir, FLAGS.output_dir,
                                                 FLAGS.do_lower_case)
  if FLAGS.direction == "hf_to_original":
    print("Run the scripts on %s with --do_lower_case=%s" % (FLAGS.output_dir, do_lower_case))
  else:
    print("%s says do_lower_case=%s" %
          (os.path.join(FLAGS.output_dir, HF_TOKENIZER_CONFIG_NAME), do_lower_case))


if __name__ == "__main__":
  define_flags()
  script_io.run_main(main)
