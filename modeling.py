# coding=utf-8
"""BERT: the configuration, the model and the layers it is built from.

A drop-in replacement for the original `modeling.py` of google-research/bert on TensorFlow 2.15
(`tf.compat.v1`, graph mode): same public functions and signatures, same variable names, shapes
and creation order (released checkpoints load as they are), same outputs. `BertModel` can also
compute in bfloat16 or float16 (`compute_type`) with the same float32 variables.

Shape letters used in comments:
  B = batch size (number of sequences)
  F = `from_tensor` sequence length
  T = `to_tensor` sequence length
  N = `num_attention_heads`
  H = `size_per_head`
"""

import collections
import copy
import functools
import json
import math
import numbers
import re

import tensorflow.compat.v1 as tf

_INTEGER_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                   "intermediate_size", "max_position_embeddings", "type_vocab_size")
_PROBABILITY_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")

# Names of the precisions a `BertModel` can compute in, and their dtypes.
_COMPUTE_TYPES = collections.OrderedDict([
    ("fp32", tf.float32),
    ("bf16", tf.bfloat16),
    ("fp16", tf.float16),
])
_HALF_TYPES = (tf.bfloat16, tf.float16)


class BertConfig(object):
  """Hyper-parameters of a `BertModel`, read from and written to `bert_config.json`."""

  def __init__(self,
               vocab_size,
               hidden_size=768,
               num_hidden_layers=12,
               num_attention_heads=12,
               intermediate_size=3072,
               hidden_act="gelu",
               hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1,
               max_position_embeddings=512,
               type_vocab_size=16,
               initializer_range=0.02):
    """Constructs a BertConfig.

    Args:
      vocab_size: number of rows of the word embedding table (ids in `input_ids`).
      hidden_size: width of the embeddings, of every encoder layer and of the pooler.
      num_hidden_layers: number of Transformer layers in the encoder.
      num_attention_heads: attention heads per layer; must divide `hidden_size`.
      intermediate_size: width of the feed-forward ("intermediate") layer.
      hidden_act: activation of the feed-forward layer: a callable or a name accepted by
        `get_activation` ("gelu", "gelu_exact", "relu", "tanh", "linear").
      hidden_dropout_prob: dropout probability of the embeddings and of every fully connected
        layer output in the encoder.
      attention_probs_dropout_prob: dropout probability of the attention probabilities.
      max_position_embeddings: longest sequence the model can take (rows of the position table).
      type_vocab_size: number of distinct `token_type_ids` (2 in the released models).
      initializer_range: stddev of the truncated normal initializer of the weight matrices.
    """
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.num_hidden_layers = num_hidden_layers
    self.num_attention_heads = num_attention_heads
    self.hidden_act = hidden_act
    self.intermediate_size = intermediate_size
    self.hidden_dropout_prob = hidden_dropout_prob
    self.attention_probs_dropout_prob = attention_probs_dropout_prob
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.initializer_range = initializer_range

  @classmethod
  def from_dict(cls, json_object):
    """Builds a config from a dict; keys not listed above are kept as attributes too."""
    config = cls(vocab_size=None)
    for key, value in json_object.items():
      config.__dict__[key] = value
    return config

  @classmethod
  def from_json_file(cls, json_file):
    """Builds a config from a JSON file (any path tf.io.gfile can read)."""
    with tf.io.gfile.GFile(json_file, "r") as reader:
      text = reader.read()
    try:
      json_object = json.loads(text)
    except ValueError as e:
      raise ValueError("%s is not a valid JSON file: %s" % (json_file, e))
    if not isinstance(json_object, dict):
      raise ValueError("%s must hold a JSON object of BERT hyper-parameters" % json_file)
    return cls.from_dict(json_object)

  def to_dict(self):
    """Returns a deep copy of the attributes as a dict."""
    return copy.deepcopy(self.__dict__)

  def to_json_string(self):
    """Returns the config as the original writes it: indented by 2, keys sorted, final newline."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

  def validate(self, is_training=True):
    """Raises ValueError naming the first hyper-parameter a `BertModel` cannot be built with.

    The dropout probabilities are checked for training only: otherwise the model leaves dropout
    out, as the original does, whatever they are.
    """
    for field in _INTEGER_FIELDS:
      value = getattr(self, field)
      if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0):
        raise ValueError("BertConfig.%s must be a positive integer, got %r" % (field, value))
    for field in _PROBABILITY_FIELDS if is_training else ():
      value = getattr(self, field)
      if not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError("BertConfig.%s must be a probability in [0, 1), got %r" % (field, value))
    if self.hidden_size % self.num_attention_heads != 0:
      raise ValueError(
          "BertConfig.hidden_size (%d) is not a multiple of num_attention_heads (%d)" %
          (self.hidden_size, self.num_attention_heads))
    get_activation(self.hidden_act)


class BertModel(object):
  """BERT ("Bidirectional Encoder Representations from Transformers").

  Example:

  ```python
  input_ids = tf.constant([[31, 51, 99], [15, 5, 0]])
  input_mask = tf.constant([[1, 1, 1], [1, 1, 0]])
  token_type_ids = tf.constant([[0, 0, 1], [0, 1, 0]])

  config = modeling.BertConfig(vocab_size=32000, hidden_size=512, num_hidden_layers=8,
                               num_attention_heads=8, intermediate_size=1024)
  model = modeling.BertModel(config=config, is_training=True, input_ids=input_ids,
                             input_mask=input_mask, token_type_ids=token_type_ids)
  logits = tf.matmul(model.get_pooled_output(), label_weights)
  ```
  """

  def __init__(self,
               config,
               is_training,
               input_ids,
               input_mask=None,
               token_type_ids=None,
               use_one_hot_embeddings=False,
               scope=None,
               compute_type=tf.float32,
               output_positions=None):
    """Builds the model graph under variable scope `scope` ("bert" by default).

    With `compute_type` tf.bfloat16 or tf.float16 (mixed precision) the encoder computes in
    that dtype, its matrix multiplications above all, while every variable stays float32 under
    its usual name, so checkpoints are the same whatever precision wrote or reads them. The
    embeddings, the layer normalisation and the attention softmax are computed in float32, and
    every output is cast to float32 for the heads and losses.

    Args:
      config: `BertConfig`.
      is_training: bool. Dropout is applied only when true.
      input_ids: int32 Tensor of shape [batch_size, seq_length].
      input_mask: (optional) int32 Tensor of shape [batch_size, seq_length], 1 for real tokens
        and 0 for padding. None means every position is a real token.
      token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length]. None means 0.
      use_one_hot_embeddings: bool. Look the word embeddings up with a one-hot matmul (fast on
        TPUs) instead of a gather.
      scope: (optional) variable scope name. Defaults to "bert".
      compute_type: tf.float32 (the original graph), tf.bfloat16 or tf.float16; see
        `get_compute_type`, and `precision.compute_type_support` for the hardware.
      output_positions: (optional) int32 Tensor of shape [batch_size, num_positions], the
        positions a head reads (e.g. the masked ones of pre-training; none, [batch_size, 0],
        for a classifier on `get_pooled_output`). The last layer is then computed at these
        positions and the first token only, attending to every token as before: the same
        outputs there (rounded differently: smaller matrix products) for less work.
        `get_sequence_output`, and the last of `get_all_encoder_layers`, are then
        [batch_size, num_positions, hidden_size], the outputs at these positions in their
        order.

    Raises:
      ValueError: the config is invalid, an input has the wrong rank or shape, the sequence
        is longer than `config.max_position_embeddings`, or `compute_type` is not one of the
        three float types.
      RuntimeError: called in eager mode, TensorFlow 2's default outside a graph.
    """
    if tf.executing_eagerly():
      # Eagerly, tf.get_variable makes variables no collection holds: tf.trainable_variables()
      # would be empty, no checkpoint would initialise them, and the outputs would come from
      # random weights without a word.
      raise RuntimeError(
          "BertModel builds a TF1-style graph: build it inside `with tf.Graph().as_default():` "
          "(or an Estimator model_fn), or call tf.compat.v1.disable_eager_execution() first")
    config.validate(is_training)
    compute_type = _check_compute_type(compute_type)
    config = copy.deepcopy(config)
    if not is_training:
      config.hidden_dropout_prob = 0.0
      config.attention_probs_dropout_prob = 0.0

    batch_size, seq_length = get_shape_list(input_ids, expected_rank=2, name="input_ids")
    _assert_same_shape(input_mask, input_ids, "input_mask")
    _assert_same_shape(token_type_ids, input_ids, "token_type_ids")
    if token_type_ids is None:
      token_type_ids = tf.zeros(shape=[batch_size, seq_length], dtype=tf.int32)

    custom_getter = None
    if compute_type != tf.float32:
      custom_getter = float32_variable_storage_getter
    with tf.variable_scope(scope, default_name="bert", custom_getter=custom_getter):
      with tf.variable_scope("embeddings"):
        (word_embeddings, self.embedding_table) = embedding_lookup(
            input_ids=input_ids,
            vocab_size=config.vocab_size,
            embedding_size=config.hidden_size,
            initializer_range=config.initializer_range,
            word_embedding_name="word_embeddings",
            use_one_hot_embeddings=use_one_hot_embeddings)
        self.embedding_output = embedding_postprocessor(
            input_tensor=word_embeddings,
            use_token_type=True,
            token_type_ids=token_type_ids,
            token_type_vocab_size=config.type_vocab_size,
            token_type_embedding_name="token_type_embeddings",
            use_position_embeddings=True,
            position_embedding_name="position_embeddings",
            initializer_range=config.initializer_range,
            max_position_embeddings=config.max_position_embeddings,
            dropout_prob=config.hidden_dropout_prob)

      with tf.variable_scope("encoder"):
        # Without a mask every position is attended to: adding the all-zero adder of an all-ones
        # mask changes no score, so the mask is left out altogether.
        attention_mask = None
        if input_mask is not None:
          attention_mask = create_attention_mask_from_input_mask(input_ids, input_mask)
        encoder_layers = transformer_model(
            input_tensor=tf.cast(self.embedding_output, compute_type),
            attention_mask=attention_mask,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            intermediate_act_fn=get_activation(config.hidden_act),
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            initializer_range=config.initializer_range,
            do_return_all_layers=True,
            last_layer_positions=_with_first_token(output_positions, batch_size))

      # Heads and losses read float32 whatever the compute type (a cast to the same dtype is
      # the tensor itself).
      first_token_tensor = encoder_layers[-1][:, 0, :]
      if output_positions is not None:
        encoder_layers[-1] = encoder_layers[-1][:, 1:, :]
      self.all_encoder_layers = [tf.cast(layer, tf.float32) for layer in encoder_layers]
      self.sequence_output = self.all_encoder_layers[-1]
      # Pre-training taught the first token ([CLS]) to summarise the sequence (next sentence
      # prediction), so its hidden state is what a segment-level classifier reads.
      with tf.variable_scope("pooler"):
        pooled_output = dense(first_token_tensor, config.hidden_size,
                              create_initializer(config.initializer_range),
                              activation=tf.tanh, name="dense")
        self.pooled_output = tf.cast(pooled_output, tf.float32)

  def get_pooled_output(self):
    """Returns the pooler output, float32 [batch_size, hidden_size]: tanh(dense(first token))."""
    return self.pooled_output

  def get_sequence_output(self):
    """Returns the last encoder layer, float32 [batch_size, seq_length, hidden_size]."""
    return self.sequence_output

  def get_all_encoder_layers(self):
    """Returns the output of every encoder layer, first layer first.

    Returns:
      list of `num_hidden_layers` float32 Tensors of shape [batch_size, seq_length,
      hidden_size].
    """
    return self.all_encoder_layers

  def get_embedding_output(self):
    """Returns the input of the encoder.

    Returns:
      float32 Tensor of shape [batch_size, seq_length, hidden_size]: the sum of the word, token
      type and position embeddings, layer-normalised (and dropped out when training).
    """
    return self.embedding_output

  def get_embedding_table(self):
    """Returns the float32 word embedding variable, [vocab_size, hidden_size]."""
    return self.embedding_table


def get_compute_type(precision):
  """Maps a precision name to the dtype `BertModel(compute_type=...)` takes.

  Args:
    precision: "fp32" (float32, the original model), "bf16" (bfloat16) or "fp16" (float16).

  Returns:
    tf.float32, tf.bfloat16 or tf.float16.

  Raises:
    ValueError: `precision` is not one of the three names.
  """
  if precision not in _COMPUTE_TYPES:
    raise ValueError("Unsupported precision %r: supported are %s" %
                     (precision, ", ".join(repr(name) for name in _COMPUTE_TYPES)))
  return _COMPUTE_TYPES[precision]


def _check_compute_type(compute_type):
  """Returns `compute_type` as a tf.DType; ValueError unless float32, bfloat16 or float16."""
  try:
    dtype = tf.as_dtype(compute_type)
  except TypeError:
    dtype = None
  if dtype not in _COMPUTE_TYPES.values():
    raise ValueError("Unsupported compute_type %r: supported are tf.float32, tf.bfloat16 and "
                     "tf.float16" % (compute_type,))
  return dtype


def float32_variable_storage_getter(getter, name, *args, **kwargs):
  """Variable scope custom getter of mixed precision: float32 storage, half-precision reads.

  A variable asked for in bfloat16 or float16 is created (or reused) in float32 under the same
  name, and read through a cast to the dtype asked for; its gradient flows back through the
  cast in float32, so the optimizer and the checkpoints see only float32 variables. Variables
  asked for in float32 are returned as they are.

  Usage: `tf.variable_scope(..., custom_getter=float32_variable_storage_getter)`.
  """
  requested_dtype = kwargs.get("dtype")
  if requested_dtype not in _HALF_TYPES:
    return getter(name, *args, **kwargs)
  kwargs["dtype"] = tf.float32
  variable = getter(name, *args, **kwargs)
  return tf.cast(variable, requested_dtype)


def _assert_same_shape(tensor, input_ids, name):
  """Raises ValueError unless the optional `tensor` has the static shape of `input_ids`."""
  if tensor is None:
    return
  assert_rank(tensor, 2, name)
  if not tensor.shape.is_compatible_with(input_ids.shape):
    raise ValueError("`%s` has shape %s but `input_ids` has shape %s" %
                     (name, tensor.shape, input_ids.shape))


def gelu(x):
  """GELU activation, the tanh approximation the original BERT was trained with.

  See https://arxiv.org/abs/1606.08415.

  Args:
    x: float Tensor.

  Returns:
    `x * Phi(x)` with the Gaussian CDF Phi approximated by
    0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
  """
  cdf = 0.5 * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))
  return x * cdf


def gelu_exact(x):
  """GELU activation with the exact Gaussian CDF (erf), as Hugging Face BERT checkpoints use.

  Args:
    x: float Tensor.

  Returns:
    `x * 0.5 * (1 + erf(x / sqrt(2)))`.
  """
  return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


_ACTIVATIONS = collections.OrderedDict([
    ("linear", None),
    ("relu", tf.nn.relu),
    ("gelu", gelu),
    ("gelu_exact", gelu_exact),
    ("tanh", tf.tanh),
])


# TensorFlow's GELUs compute the same functions as `gelu` and `gelu_exact` in a form the
# grappler remapper recognises and fuses into a preceding oneDNN matmul; the float32 model keeps
# the original's ops, whose rounding the fixtures record.
_HALF_PRECISION_ACTIVATIONS = {
    gelu: functools.partial(tf.compat.v2.nn.gelu, approximate=True),
    gelu_exact: functools.partial(tf.compat.v2.nn.gelu, approximate=False),
}


def get_activation(activation_string):
  """Maps an activation name to its function, e.g. "relu" -> `tf.nn.relu`.

  Args:
    activation_string: a name (case-insensitive): "gelu" (tanh approximation), "gelu_exact"
      (erf), "relu", "tanh", or "linear"/""/None for no activation. Anything that is not a
      string is taken to be an activation function already and returned as it is.

  Returns:
    A function from Tensor to Tensor, or None for no activation.

  Raises:
    ValueError: the name is not one of the above.
  """
  if not isinstance(activation_string, str):
    return activation_string
  if not activation_string:
    return None
  name = activation_string.lower()
  if name not in _ACTIVATIONS:
    raise ValueError("Unsupported activation %r: supported are %s, or a callable" %
                     (activation_string, ", ".join(repr(k) for k in _ACTIVATIONS)))
  return _ACTIVATIONS[name]


def get_assignment_map_from_checkpoint(tvars, init_checkpoint):
  """Maps the variables in `tvars` to the checkpoint variables of the same name.

  Args:
    tvars: list of variables, e.g. `tf.trainable_variables()`.
    init_checkpoint: checkpoint path prefix.

  Returns:
    (assignment_map, initialized_variable_names): an OrderedDict {checkpoint name: variable
    name} in checkpoint order for `tf.train.init_from_checkpoint`, and a dict whose keys are the
    names of the variables found in the checkpoint, both as "name" and as "name:0". When it maps
    no variable (other names, or no variables at all) a warning says so.
  """
  variable_names = set()
  for var in tvars:
    match = re.match("^(.*):\\d+$", var.name)
    variable_names.add(match.group(1) if match else var.name)

  assignment_map = collections.OrderedDict()
  initialized_variable_names = {}
  for name, _ in tf.train.list_variables(init_checkpoint):
    if name in variable_names:
      assignment_map[name] = name
      initialized_variable_names[name] = 1
      initialized_variable_names[name + ":0"] = 1
  if not assignment_map:
    tf.logging.warning(
        "None of the %d variables given is in the checkpoint %s, so none will be initialised "
        "from it%s", len(variable_names), init_checkpoint,
        "" if variable_names else " (tf.trainable_variables() is empty: was the model built?)")
  return (assignment_map, initialized_variable_names)


def dropout(input_tensor, dropout_prob):
  """Zeroes each value with probability `dropout_prob` and scales the rest by 1/(1 - p).

  Args:
    input_tensor: float Tensor.
    dropout_prob: float, the probability of DROPPING a value; None or 0.0 means no dropout.

  Returns:
    Tensor of the shape of `input_tensor`.
  """
  if dropout_prob is None or dropout_prob == 0.0:
    return input_tensor
  if input_tensor.dtype == tf.float32:
    return tf.nn.dropout(input_tensor, rate=dropout_prob)
  # Half precision: tf.nn.dropout would draw its random numbers in that precision, which the
  # CPU does more slowly than float32 ones; the mask is the same either way.
  keep = tf.cast(tf.random.uniform(tf.shape(input_tensor)) >= dropout_prob, input_tensor.dtype)
  return input_tensor * keep * tf.cast(1.0 / (1.0 - dropout_prob), input_tensor.dtype)


def layer_norm(input_tensor, name=None):
  """Layer normalisation over the last axis, with the original's variables.

  Creates `LayerNorm/beta` then `LayerNorm/gamma` (or `<name>/...`), of shape [width], as the
  original's tf.contrib layer_norm did, so checkpoints keep their names.

  A bfloat16 or float16 input is normalised in float32, with float32 variables, and the result
  cast back: mean and variance taken in half precision would lose too much. Epsilon stays
  1e-12 (contrib used 1e-3 for float16 inputs only because float16 cannot hold 1e-12; float32
  statistics can), so the result is the float32 model's, rounded.

  Args:
    input_tensor: float Tensor of shape [..., width].
    name: (optional) variable scope name. Defaults to "LayerNorm".

  Returns:
    Tensor of the shape and dtype of `input_tensor`.
  """
  if input_tensor.dtype in _HALF_TYPES:
    return tf.cast(layer_norm(tf.cast(input_tensor, tf.float32), name), input_tensor.dtype)
  width = input_tensor.shape[-1:]
  with tf.variable_scope(name, default_name="LayerNorm"):
    beta = tf.get_variable("beta", shape=width, dtype=input_tensor.dtype,
                           initializer=tf.zeros_initializer())
    gamma = tf.get_variable("gamma", shape=width, dtype=input_tensor.dtype,
                            initializer=tf.ones_initializer())
    mean, variance = tf.nn.moments(input_tensor, axes=[-1], keep_dims=True)
    return tf.nn.batch_normalization(input_tensor, mean, variance, offset=beta, scale=gamma,
                                     variance_epsilon=1e-12)


def layer_norm_and_dropout(input_tensor, dropout_prob, name=None):
  """Layer normalisation followed by dropout; shapes as `layer_norm`."""
  output_tensor = layer_norm(input_tensor, name)
  return dropout(output_tensor, dropout_prob)


def create_initializer(initializer_range=0.02):
  """Returns a truncated normal initializer with stddev `initializer_range`."""
  return tf.truncated_normal_initializer(stddev=initializer_range)


def dense(input_tensor, output_size, kernel_initializer, activation=None, name="dense"):
  """Fully connected layer with the variables `name/kernel` and `name/bias` of tf.layers.dense.

  The variables take the dtype of `input_tensor`. In bfloat16 or float16, `gelu` and
  `gelu_exact` are computed by TensorFlow's own GELU, the same functions, which oneDNN fuses
  into the matrix multiplication when no gradient needs the intermediate values (prediction
  on CPU).

  Args:
    input_tensor: float Tensor of shape [batch_size, input_width].
    output_size: int, the output width.
    kernel_initializer: initializer of the [input_width, output_size] kernel.
    activation: (optional) function applied to the output.
    name: variable scope name.

  Returns:
    Tensor of shape [batch_size, output_size] and the dtype of `input_tensor`.
  """
  input_width = input_tensor.shape[-1]
  with tf.variable_scope(name):
    kernel = tf.get_variable("kernel", shape=[input_width, output_size],
                             dtype=input_tensor.dtype, initializer=kernel_initializer)
    bias = tf.get_variable("bias", shape=[output_size], dtype=input_tensor.dtype,
                           initializer=tf.zeros_initializer())
  output = tf.nn.bias_add(tf.matmul(input_tensor, kernel), bias)
  if output.dtype in _HALF_TYPES:
    activation = _HALF_PRECISION_ACTIVATIONS.get(activation, activation)
  if activation is not None:
    output = activation(output)
  return output


def embedding_lookup(input_ids,
                     vocab_size,
                     embedding_size=128,
                     initializer_range=0.02,
                     word_embedding_name="word_embeddings",
                     use_one_hot_embeddings=False):
  """Looks the ids up in a new word embedding table.

  Args:
    input_ids: int32 Tensor of shape [batch_size, seq_length], or [batch_size, seq_length,
      num_inputs] whose embeddings are concatenated.
    vocab_size: int, rows of the embedding table.
    embedding_size: int, width of the embeddings.
    initializer_range: float, stddev of the table initializer.
    word_embedding_name: name of the table variable.
    use_one_hot_embeddings: bool. True: multiply one-hot vectors by the table (fast on TPUs);
      False: gather rows.

  Returns:
    (output, embedding_table): float Tensor of shape [batch_size, seq_length, embedding_size]
    (times num_inputs for rank 3 ids), and the [vocab_size, embedding_size] table.
  """
  input_shape = get_shape_list(input_ids, expected_rank=[2, 3])
  embedding_table = tf.get_variable(
      name=word_embedding_name,
      shape=[vocab_size, embedding_size],
      initializer=create_initializer(initializer_range))

  if use_one_hot_embeddings:
    one_hot_input_ids = tf.one_hot(tf.reshape(input_ids, [-1]), depth=vocab_size)
    output = tf.matmul(one_hot_input_ids, embedding_table)
  else:
    output = tf.gather(embedding_table, input_ids)

  # Rank 3 already when ids of rank 2 were gathered; otherwise the embeddings of one position
  # are concatenated.
  if output.shape.ndims != 3:
    num_inputs = input_shape[2] if len(input_shape) == 3 else 1
    output = tf.reshape(output, input_shape[0:2] + [num_inputs * embedding_size])
  return (output, embedding_table)


def embedding_postprocessor(input_tensor,
                            use_token_type=False,
                            token_type_ids=None,
                            token_type_vocab_size=16,
                            token_type_embedding_name="token_type_embeddings",
                            use_position_embeddings=True,
                            position_embedding_name="position_embeddings",
                            initializer_range=0.02,
                            max_position_embeddings=512,
                            dropout_prob=0.1):
  """Adds token type and position embeddings to the word embeddings, then normalises.

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length, embedding_size].
    use_token_type: bool, whether to add embeddings of `token_type_ids`.
    token_type_ids: (optional) int32 Tensor of shape [batch_size, seq_length]; required when
      `use_token_type` is true.
    token_type_vocab_size: int, rows of the token type table.
    token_type_embedding_name: name of the token type table variable.
    use_position_embeddings: bool, whether to add learned position embeddings.
    position_embedding_name: name of the position table variable.
    initializer_range: float, stddev of the tables' initializer.
    max_position_embeddings: int, rows of the position table: the longest sequence allowed.
    dropout_prob: float, dropout probability of the output.

  Returns:
    float Tensor of shape [batch_size, seq_length, embedding_size].

  Raises:
    ValueError: `token_type_ids` is missing, or the sequence is statically known to be longer
      than `max_position_embeddings` (a longer dynamic length fails when the graph runs).
  """
  batch_size, seq_length, width = get_shape_list(input_tensor, expected_rank=3)
  output = input_tensor

  if use_token_type:
    if token_type_ids is None:
      raise ValueError("`token_type_ids` must be given when `use_token_type` is True")
    token_type_table = tf.get_variable(
        name=token_type_embedding_name,
        shape=[token_type_vocab_size, width],
        initializer=create_initializer(initializer_range))
    # The table has a handful of rows, where a one-hot matmul beats a gather on TPUs.
    one_hot_ids = tf.one_hot(tf.reshape(token_type_ids, [-1]), depth=token_type_vocab_size)
    token_type_embeddings = tf.matmul(one_hot_ids, token_type_table)
    output += tf.reshape(token_type_embeddings, [batch_size, seq_length, width])

  if use_position_embeddings:
    full_position_embeddings = tf.get_variable(
        name=position_embedding_name,
        shape=[max_position_embeddings, width],
        initializer=create_initializer(initializer_range))
    # The table covers the longest sequence the model allows; shorter sequences use its first
    # rows, [seq_length, width], broadcast over the batch.
    with tf.control_dependencies(
        _check_sequence_length(seq_length, max_position_embeddings)):
      position_embeddings = tf.slice(full_position_embeddings, [0, 0], [seq_length, -1])
    output += position_embeddings

  return layer_norm_and_dropout(output, dropout_prob)


def _check_sequence_length(seq_length, max_position_embeddings):
  """Returns the run-time check that a dynamic `seq_length` fits the position table.

  A static `seq_length` is checked at once: ValueError when too long, no run-time check.
  """
  if isinstance(seq_length, int):
    if seq_length > max_position_embeddings:
      raise ValueError("The sequence length (%d) is longer than max_position_embeddings (%d) of "
                       "the BERT config" % (seq_length, max_position_embeddings))
    return []
  return [tf.debugging.assert_less_equal(
      seq_length, max_position_embeddings,
      message="The sequence length is longer than max_position_embeddings (%d) of the BERT "
      "config" % max_position_embeddings)]


def create_attention_mask_from_input_mask(from_tensor, to_mask):
  """Builds the 3D attention mask of a batch from its 2D padding mask.

  Padding positions are masked as keys only: what padding positions attend to is ignored
  downstream, so every query position gets the same row.

  Args:
    from_tensor: Tensor of shape [batch_size, from_seq_length, ...].
    to_mask: int32 Tensor of shape [batch_size, to_seq_length], 1 for real tokens.

  Returns:
    float32 Tensor of shape [batch_size, from_seq_length, to_seq_length] of 1.0 (attend) and
    0.0 (masked).
  """
  batch_size, from_seq_length = get_shape_list(from_tensor, expected_rank=[2, 3])[0:2]
  to_seq_length = get_shape_list(to_mask, expected_rank=2)[1]

  # `to_mask` = [B, 1, T]
  to_mask = tf.cast(tf.reshape(to_mask, [batch_size, 1, to_seq_length]), tf.float32)
  return tf.broadcast_to(to_mask, [batch_size, from_seq_length, to_seq_length])


def _split_heads(input_tensor, batch_size, seq_length, num_attention_heads, size_per_head):
  """Reshapes [B*S, N*H] to [B, N, S, H], one slice per head."""
  output_tensor = tf.reshape(
      input_tensor, [batch_size, seq_length, num_attention_heads, size_per_head])
  return tf.transpose(output_tensor, [0, 2, 1, 3])


def attention_layer(from_tensor,
                    to_tensor,
                    attention_mask=None,
                    num_attention_heads=1,
                    size_per_head=512,
                    query_act=None,
                    key_act=None,
                    value_act=None,
                    attention_probs_dropout_prob=0.0,
                    initializer_range=0.02,
                    do_return_2d_tensor=False,
                    batch_size=None,
                    from_seq_length=None,
                    to_seq_length=None):
  """Multi-headed scaled dot-product attention from `from_tensor` to `to_tensor`.

  `from_tensor` is projected to queries and `to_tensor` to keys and values, each split into
  `num_attention_heads` heads of `size_per_head`; each head attends with
  softmax(Q K^T / sqrt(H)) V and the heads are concatenated back. Self-attention when both
  tensors are the same. Creates the variables `query`, `key` and `value` (`kernel`, `bias`).
  Inputs in bfloat16 or float16 give an output of their dtype; the softmax is taken in float32.

  Args:
    from_tensor: float Tensor of shape [batch_size, from_seq_length, from_width], or
      [batch_size * from_seq_length, from_width] with the sizes given below.
    to_tensor: float Tensor of shape [batch_size, to_seq_length, to_width], or
      [batch_size * to_seq_length, to_width]; same rank as `from_tensor`.
    attention_mask: (optional) Tensor of shape [batch_size, from_seq_length, to_seq_length]
      of 1 (attend) and 0 (ignore).
    num_attention_heads: int, number of heads.
    size_per_head: int, width of each head.
    query_act: (optional) activation of the query projection.
    key_act: (optional) activation of the key projection.
    value_act: (optional) activation of the value projection.
    attention_probs_dropout_prob: float, dropout probability of the attention probabilities.
    initializer_range: float, stddev of the kernel initializer.
    do_return_2d_tensor: bool. True: return [batch_size * from_seq_length,
      num_attention_heads * size_per_head]; False: [batch_size, from_seq_length,
      num_attention_heads * size_per_head].
    batch_size: (optional) int, required when the inputs are rank 2.
    from_seq_length: (optional) int, required when the inputs are rank 2.
    to_seq_length: (optional) int, required when the inputs are rank 2.

  Returns:
    float Tensor, of the shape `do_return_2d_tensor` selects.

  Raises:
    ValueError: the ranks differ, or rank 2 inputs come without the three sizes.
  """
  from_shape = get_shape_list(from_tensor, expected_rank=[2, 3])
  to_shape = get_shape_list(to_tensor, expected_rank=[2, 3])
  if len(from_shape) != len(to_shape):
    raise ValueError("The rank of `from_tensor` (%d) must match the rank of `to_tensor` (%d)" %
                     (len(from_shape), len(to_shape)))
  if len(from_shape) == 3:
    batch_size = from_shape[0]
    from_seq_length = from_shape[1]
    to_seq_length = to_shape[1]
  elif batch_size is None or from_seq_length is None or to_seq_length is None:
    raise ValueError("attention_layer needs `batch_size`, `from_seq_length` and "
                     "`to_seq_length` when its inputs are rank 2")

  # Rank 2 throughout: matrix multiplications without reshapes in between.
  from_tensor_2d = reshape_to_matrix(from_tensor)
  to_tensor_2d = reshape_to_matrix(to_tensor)
  initializer = create_initializer(initializer_range)
  width = num_attention_heads * size_per_head

  # `query_layer` = [B*F, N*H]
  query_layer = dense(from_tensor_2d, width, initializer, query_act, name="query")
  # `key_layer` = [B*T, N*H]
  key_layer = dense(to_tensor_2d, width, initializer, key_act, name="key")
  # `value_layer` = [B*T, N*H]
  value_layer = dense(to_tensor_2d, width, initializer, value_act, name="value")

  # `query_layer` = [B, N, F, H]
  query_layer = _split_heads(query_layer, batch_size, from_seq_length, num_attention_heads,
                             size_per_head)
  # `key_layer` = [B, N, T, H]
  key_layer = _split_heads(key_layer, batch_size, to_seq_length, num_attention_heads,
                           size_per_head)

  # `attention_scores` = [B, N, F, T]
  attention_scores = tf.matmul(query_layer, key_layer, transpose_b=True)
  # Half-precision scores are scaled, masked and normalised in float32, as mixed precision
  # training does with softmaxes: the normalising sum over every position would lose precision.
  compute_type = attention_scores.dtype
  attention_scores = tf.cast(attention_scores, tf.float32)
  attention_scores = tf.multiply(attention_scores, 1.0 / math.sqrt(float(size_per_head)))

  if attention_mask is not None:
    # `attention_mask` = [B, 1, F, T], the same for every head.
    attention_mask = tf.expand_dims(attention_mask, axis=[1])
    # 0 where attended, -10000 where masked: after the softmax a masked position weighs
    # nothing.
    adder = (1.0 - tf.cast(attention_mask, attention_scores.dtype)) * -10000.0
    attention_scores += adder

  # `attention_probs` = [B, N, F, T]
  attention_probs = tf.cast(tf.nn.softmax(attention_scores), compute_type)
  # Drops whole tokens to attend to, as the original Transformer does.
  attention_probs = dropout(attention_probs, attention_probs_dropout_prob)

  # `value_layer` = [B, N, T, H]
  value_layer = _split_heads(value_layer, batch_size, to_seq_length, num_attention_heads,
                             size_per_head)
  # `context_layer` = [B, N, F, H]
  context_layer = tf.matmul(attention_probs, value_layer)
  # `context_layer` = [B, F, N, H]
  context_layer = tf.transpose(context_layer, [0, 2, 1, 3])

  if do_return_2d_tensor:
    # `context_layer` = [B*F, N*H]
    return tf.reshape(context_layer, [batch_size * from_seq_length, width])
  # `context_layer` = [B, F, N*H]
  return tf.reshape(context_layer, [batch_size, from_seq_length, width])


def transformer_model(input_tensor,
                      attention_mask=None,
                      hidden_size=768,
                      num_hidden_layers=12,
                      num_attention_heads=12,
                      intermediate_size=3072,
                      intermediate_act_fn=gelu,
                      hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1,
                      initializer_range=0.02,
                      do_return_all_layers=False,
                      last_layer_positions=None):
  """The Transformer encoder of "Attention is All You Need" (https://arxiv.org/abs/1706.03762).

  Each layer `layer_N`: self-attention, projection, dropout, residual, layer norm
  (`attention/...`); then the feed-forward layer with `intermediate_act_fn`
  (`intermediate/dense`), projection back, dropout, residual, layer norm (`output/...`).

  Args:
    input_tensor: float Tensor of shape [batch_size, seq_length, hidden_size].
    attention_mask: (optional) Tensor of shape [batch_size, seq_length, seq_length] of 1
      (attend) and 0 (ignore).
    hidden_size: int, width of every layer; must be divisible by `num_attention_heads`.
    num_hidden_layers: int, number of layers.
    num_attention_heads: int, attention heads per layer.
    intermediate_size: int, width of the feed-forward layer.
    intermediate_act_fn: activation function of the feed-forward layer.
    hidden_dropout_prob: float, dropout probability of the layer outputs.
    attention_probs_dropout_prob: float, dropout probability of the attention probabilities.
    initializer_range: float, stddev of the kernel initializer.
    do_return_all_layers: bool. True: return the list of every layer's output; False: the last.
    last_layer_positions: (optional) int32 Tensor of shape [batch_size, num_positions]: the
      last layer computes the outputs at these positions only (attending to every position),
      [batch_size, num_positions, hidden_size].

  Returns:
    float Tensor of shape [batch_size, seq_length, hidden_size], or a list of
    `num_hidden_layers` of them.

  Raises:
    ValueError: `hidden_size` is not a multiple of `num_attention_heads`, or the input width is
      not `hidden_size`.
  """
  if hidden_size % num_attention_heads != 0:
    raise ValueError("The hidden size (%d) is not a multiple of the number of attention heads "
                     "(%d)" % (hidden_size, num_attention_heads))
  attention_head_size = hidden_size // num_attention_heads

  input_shape = get_shape_list(input_tensor, expected_rank=3)
  batch_size, seq_length, input_width = input_shape
  # The residual connections add each layer's input to its output.
  if input_width != hidden_size:
    raise ValueError("The width of the input tensor (%d) != hidden size (%d)" %
                     (input_width, hidden_size))

  initializer = create_initializer(initializer_range)
  # Every layer works on [B*S, hidden_size] matrices; only the returned outputs are 3D.
  prev_output = reshape_to_matrix(input_tensor)
  all_layer_outputs = []
  for layer_idx in range(num_hidden_layers):
    with tf.variable_scope("layer_%d" % layer_idx):
      layer_input = prev_output
      # The positions whose output the layer computes: all, or in a last layer with
      # `last_layer_positions`, those: `from_input` = [B*F, hidden_size].
      from_input, from_seq_length, from_mask = layer_input, seq_length, attention_mask
      if last_layer_positions is not None and layer_idx == num_hidden_layers - 1:
        from_seq_length = get_shape_list(last_layer_positions, expected_rank=2)[1]
        from_input = reshape_to_matrix(tf.gather(
            tf.reshape(layer_input, input_shape), last_layer_positions, batch_dims=1))
        if attention_mask is not None:
          from_mask = tf.gather(attention_mask, last_layer_positions, batch_dims=1)

      with tf.variable_scope("attention"):
        with tf.variable_scope("self"):
          attention_output = attention_layer(
              from_tensor=from_input,
              to_tensor=layer_input,
              attention_mask=from_mask,
              num_attention_heads=num_attention_heads,
              size_per_head=attention_head_size,
              attention_probs_dropout_prob=attention_probs_dropout_prob,
              initializer_range=initializer_range,
              do_return_2d_tensor=True,
              batch_size=batch_size,
              from_seq_length=from_seq_length,
              to_seq_length=seq_length)
        with tf.variable_scope("output"):
          attention_output = dense(attention_output, hidden_size, initializer)
          attention_output = dropout(attention_output, hidden_dropout_prob)
          attention_output = layer_norm(attention_output + from_input)

      with tf.variable_scope("intermediate"):
        intermediate_output = dense(attention_output, intermediate_size, initializer,
                                    activation=intermediate_act_fn)

      with tf.variable_scope("output"):
        layer_output = dense(intermediate_output, hidden_size, initializer)
        layer_output = dropout(layer_output, hidden_dropout_prob)
        layer_output = layer_norm(layer_output + attention_output)
        prev_output = layer_output
        all_layer_outputs.append(layer_output)

  output_shapes = [input_shape] * num_hidden_layers
  if last_layer_positions is not None:
    output_shapes[-1] = [batch_size, from_seq_length, hidden_size]
  outputs = [reshape_from_matrix(output, shape)
             for output, shape in zip(all_layer_outputs, output_shapes)]
  return outputs if do_return_all_layers else outputs[-1]


def _with_first_token(positions, batch_size):
  """Position 0 then `positions` ([batch_size, num_positions] int32), or None for None."""
  if positions is None:
    return None
  return tf.concat([tf.zeros([batch_size, 1], positions.dtype), positions], axis=1)


def get_shape_list(tensor, expected_rank=None, name=None):
  """Returns the shape of `tensor` as a list: ints where static, scalar Tensors where dynamic.

  Args:
    tensor: Tensor.
    expected_rank: (optional) int or list of ints; ValueError when the rank is not one of them.
    name: (optional) name of the tensor in the error message; defaults to `tensor.name`.

  Returns:
    List of the dimensions of `tensor`.
  """
  if expected_rank is not None:
    assert_rank(tensor, expected_rank, name)

  shape = tensor.shape.as_list()
  dynamic_indexes = [index for (index, dim) in enumerate(shape) if dim is None]
  if dynamic_indexes:
    dynamic_shape = tf.shape(tensor)
    for index in dynamic_indexes:
      shape[index] = dynamic_shape[index]
  return shape


def reshape_to_matrix(input_tensor):
  """Reshapes a Tensor of rank >= 2, [..., width], to a matrix [-1, width]."""
  ndims = input_tensor.shape.ndims
  if ndims is None or ndims < 2:
    raise ValueError("Input tensor must have at least rank 2. Shape = %s" % input_tensor.shape)
  if ndims == 2:
    return input_tensor
  width = get_shape_list(input_tensor)[-1]
  return tf.reshape(input_tensor, [-1, width])


def reshape_from_matrix(output_tensor, orig_shape_list):
  """Reshapes a matrix [-1, width] back to the leading dimensions of `orig_shape_list`.

  Args:
    output_tensor: Tensor of shape [product of orig_shape_list[:-1], width].
    orig_shape_list: shape list (from `get_shape_list`) of the tensor before
      `reshape_to_matrix`.

  Returns:
    Tensor of shape orig_shape_list[:-1] + [width].
  """
  if len(orig_shape_list) == 2:
    return output_tensor
  width = get_shape_list(output_tensor)[-1]
  return tf.reshape(output_tensor, orig_shape_list[0:-1] + [width])


def assert_rank(tensor, expected_rank, name=None):
  """Raises ValueError when the rank of `tensor` is not `expected_rank`.

  Args:
    tensor: Tensor.
    expected_rank: int or list of ints.
    name: (optional) name of the tensor in the message; defaults to `tensor.name`.
  """
  if name is None:
    name = "get_shape_list" if tf.executing_eagerly() else tensor.name
  if isinstance(expected_rank, numbers.Integral):
    expected_ranks = [expected_rank]
  else:
    expected_ranks = list(expected_rank)

  actual_rank = tensor.shape.ndims
  if actual_rank not in expected_ranks:
    expected = " or ".join(str(rank) for rank in expected_ranks)
    raise ValueError(
        "The tensor `%s` in scope `%s` has rank %s (shape %s) but rank %s was expected" %
        (name, tf.get_variable_scope().name, actual_rank, tensor.shape, expected))


def compute_type_support(compute_type):
  """Kept for code that calls it here: the hardware check is `precision.compute_type_support`."""
  import precision  # pylint: disable=import-outside-toplevel
  return precision.compute_type_support(compute_type)
