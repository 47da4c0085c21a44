# coding=utf-8
"""The optimizer BERT was trained with: Adam with decoupled weight decay, linear warm-up and decay.

`create_optimizer` builds the train op the scripts use. `AdamWeightDecayOptimizer` implements
only the hooks of `tf.train.Optimizer` (`_create_slots`, `_prepare`, `_apply_dense`, ...), so the
base class's `apply_gradients` does the rest: it skips variables without a gradient, merges the
replicas of a `tf.distribute` strategy and increments the global step after the update.
"""

import re

import tensorflow.compat.v1 as tf

# Variables whose names contain one of these patterns get no weight decay.
EXCLUDE_FROM_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu):
  """Creates the op that makes one training step on all trainable variables.

  Gradients of `loss` are clipped to a global norm of 1.0 and applied by an
  `AdamWeightDecayOptimizer` (weight decay rate 0.01, none on LayerNorm and bias variables) with
  the learning rate of `learning_rate_schedule`. The op also increments the global step by one.

  Args:
    loss: float32 Tensor of shape [], the loss to minimise.
    init_lr: float, the peak learning rate, reached at the end of warm-up.
    num_train_steps: positive int, the step at which the learning rate reaches 0.0.
    num_warmup_steps: int >= 0 (or None for 0), the number of linear warm-up steps.
    use_tpu: bool, whether to sum the gradients of the TPU shards (`tf.tpu.CrossShardOptimizer`).

  Returns:
    The training `Operation`.

  Raises:
    ValueError: if num_train_steps is not positive or num_warmup_steps is negative.
  """
  _check_step_counts(num_train_steps, num_warmup_steps)
  global_step = tf.train.get_or_create_global_step()
  learning_rate = learning_rate_schedule(global_step, init_lr, num_train_steps, num_warmup_steps)

  optimizer = AdamWeightDecayOptimizer(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY)
  if use_tpu:
    optimizer = tf.tpu.CrossShardOptimizer(optimizer)

  tvars = tf.trainable_variables()
  grads = tf.gradients(loss, tvars)

  # BERT was pre-trained with this clipping; on TPU it applies to each shard's gradients.
  grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)

  return optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)


def learning_rate_schedule(global_step, init_lr, num_train_steps, num_warmup_steps):
  """Returns the learning rate at `global_step`: linear warm-up, then linear decay to zero.

  While global_step < num_warmup_steps the rate is init_lr * global_step / num_warmup_steps.
  Afterwards it is the linear decay from init_lr at step 0 to 0.0 at num_train_steps (and 0.0
  beyond), so warm-up ends on the decay line rather than at init_lr.

  Args:
    global_step: int64 Tensor of shape [] (or the global step variable).
    init_lr: float, the learning rate the decay starts from.
    num_train_steps: positive int, the step at which the rate reaches 0.0.
    num_warmup_steps: int >= 0 (or None for 0), the number of warm-up steps.

  Returns:
    float32 Tensor of shape [].
  """
  decayed_lr = tf.train.polynomial_decay(
      tf.constant(init_lr, dtype=tf.float32),
      global_step,
      num_train_steps,
      end_learning_rate=0.0,
      power=1.0,
      cycle=False)
  if not num_warmup_steps:
    return decayed_lr
  warmup_fraction = tf.cast(global_step, tf.float32) / float(num_warmup_steps)
  warmup_lr = init_lr * warmup_fraction
  return tf.where(global_step < num_warmup_steps, warmup_lr, decayed_lr)


def _check_step_counts(num_train_steps, num_warmup_steps):
  """Raises ValueError for step counts that would silently give a NaN or odd learning rate."""
  if num_train_steps <= 0:
    raise ValueError(
        "num_train_steps must be positive (the learning rate decays to zero over it), got %r; "
        "too few training examples for the batch size?" % (num_train_steps,))
  if num_warmup_steps is not None and num_warmup_steps < 0:
    raise ValueError("num_warmup_steps must be 0 or more, got %r" % (num_warmup_steps,))


class AdamWeightDecayOptimizer(tf.train.Optimizer):
  """Adam with decoupled weight decay and no bias correction, as BERT was trained.

  For each variable p with gradient g:
    m <- beta_1 * m + (1 - beta_1) * g
    v <- beta_2 * v + (1 - beta_2) * g^2
    p <- p - learning_rate * (m / (sqrt(v) + epsilon) + weight_decay_rate * p)
  where the weight-decay term is left out for variables whose name matches (`re.search`) one of
  `exclude_from_weight_decay`. Decaying p directly, rather than adding |p|^2 to the loss, keeps
  the decay out of m and v.

  The slots are the variables `<variable name>/adam_m` and `<variable name>/adam_v`, the names
  the original code gives them, so checkpoints of either code resume in the other.
  """

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="AdamWeightDecayOptimizer"):
    """Constructs an AdamWeightDecayOptimizer.

    Args:
      learning_rate: float or float32 Tensor of shape [].
      weight_decay_rate: float, the decoupled weight decay rate; 0.0 for none.
      beta_1: float, decay rate of the first-moment estimate m.
      beta_2: float, decay rate of the second-moment estimate v.
      epsilon: float, added to sqrt(v) in the denominator.
      exclude_from_weight_decay: list of regular expressions; variables whose names match one
        are not decayed.
      name: name scope of the update ops.
    """
    super().__init__(use_locking=False, name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay
    self._learning_rate_tensor = None

  def _create_slots(self, var_list):
    for var in var_list:
      self._zeros_slot(var, "adam_m", "adam_m")
      self._zeros_slot(var, "adam_v", "adam_v")

  def _prepare(self):
    self._learning_rate_tensor = tf.convert_to_tensor(
        self.learning_rate, dtype=tf.float32, name="learning_rate")

  def _apply_dense(self, grad, var):
    m = self.get_slot(var, "adam_m")
    v = self.get_slot(var, "adam_v")

    next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
    next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    if self._do_use_weight_decay(self._get_variable_name(var.name)):
      update += self.weight_decay_rate * var
    next_var = var - self._learning_rate_tensor * update

    return tf.group(
        var.assign(next_var, read_value=False),
        m.assign(next_m, read_value=False),
        v.assign(next_v, read_value=False))

  # The base class passes the variable itself as `handle`, so one update serves both kinds.
  def _resource_apply_dense(self, grad, handle):
    return self._apply_dense(grad, handle)

  # A sparse gradient (an embedding lookup's) is applied densely, as the original did: m, v and
  # the weight decay change every row, not only the rows looked up.
  def _apply_sparse(self, grad, var):
    return self._apply_dense(_to_dense(grad.values, grad.indices, var), var)

  def _resource_apply_sparse(self, grad, handle, indices):
    return self._apply_dense(_to_dense(grad, indices, handle), handle)

  def _do_use_weight_decay(self, param_name):
    """Whether the variable named `param_name` gets weight decay."""
    if not self.weight_decay_rate:
      return False
    for pattern in self.exclude_from_weight_decay or []:
      if re.search(pattern, param_name) is not None:
        return False
    return True

  def _get_variable_name(self, param_name):
    """Returns a variable name without its ":0" output suffix."""
    match = re.match(r"^(.*):\d+$", param_name)
    return match.group(1) if match else param_name


def _to_dense(values, indices, var):
  """Sums the rows `values` [N, ...] into a zero Tensor of var's shape at rows `indices` [N]."""
  return tf.math.unsorted_segment_sum(values, indices, num_segments=var.shape[0])
