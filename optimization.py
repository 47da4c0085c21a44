# coding=utf-8
"""The optimizer BERT was trained with: Adam with decoupled weight decay, linear warm-up and decay.

`create_optimizer` builds the train op the scripts use. `AdamWeightDecayOptimizer` implements
only the hooks of `tf.train.Optimizer` (`_create_slots`, `_prepare`, `_apply_dense`, ...), so the
base class's `apply_gradients` does the rest: it skips variables without a gradient, merges the
replicas of a `tf.distribute` strategy and increments the global step after the update.

Under a `tf.distribute` strategy, or when gradients are accumulated over several micro-batches,
`create_optimizer` does not use the base `apply_gradients`: it sums the gradients of all
micro-batches and replicas first, with one all-reduce per update, so that clipping sees the
gradient of the whole global batch, exactly as one device training on that batch would.
"""

import functools
import numbers
import re

import tensorflow.compat.v1 as tf

# Variables whose names contain one of these patterns get no weight decay.
EXCLUDE_FROM_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]


# BERT was pre-trained with its gradients clipped to this global norm.
CLIP_NORM = 1.0


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                     gradient_accumulation_steps=1, loss_scaling=False, fused=False):
  """Creates the op that makes one training step on all trainable variables.

  Gradients of `loss` are clipped to a global norm of 1.0 and applied by an
  `AdamWeightDecayOptimizer` (weight decay rate 0.01, none on LayerNorm and bias variables) with
  the learning rate of `learning_rate_schedule`. The op also increments the global step by one.

  With gradient_accumulation_steps = N > 1, `loss` is the mean loss of a micro-batch of 1/N of
  the batch. Each run of the op adds 1/N of its gradients to accumulators (local variables, left
  out of checkpoints); every N-th run clips and applies their sum, the gradient of the whole
  batch's mean loss, increments the global step and empties the accumulators. num_train_steps,
  num_warmup_steps and the global step count these updates, not the runs.

  Under a `tf.distribute` strategy the op must be built in a replica context (an Estimator's
  model_fn is), where `loss` is the mean loss of the replica's share of the batch: the replicas'
  gradients are summed with one all-reduce per update, before clipping, and the variables and
  the global step are updated once, so R replicas train as one device on their whole batch.

  Args:
    loss: float32 Tensor of shape [], the loss to minimise.
    init_lr: float, the peak learning rate, reached at the end of warm-up.
    num_train_steps: positive int, the step at which the learning rate reaches 0.0.
    num_warmup_steps: int, the number of linear warm-up steps; 0, None or a negative number
      (as in the original) for none.
    use_tpu: bool, whether to sum the gradients of the TPU shards (`tf.tpu.CrossShardOptimizer`).
    gradient_accumulation_steps: positive int, the number of runs (micro-batches) per update.
    loss_scaling: bool, dynamic loss scaling for float16 compute (see
      `apply_with_dynamic_loss_scale`); one device, no accumulation.
    fused: bool, update the variables in place with TensorFlow's Adam kernel: faster, rounded
      differently from the original (see `AdamWeightDecayOptimizer`).

  Returns:
    The training `Operation`.

  Raises:
    ValueError: if num_train_steps is not positive, gradient_accumulation_steps is not a
      positive int or is above 1 with use_tpu or with reference (not resource) variables, or
      the op is built in the cross-replica context of a strategy, or loss_scaling is asked for
      with accumulation, a strategy or TPU.
  """
  _check_num_train_steps(num_train_steps)
  _check_accumulation_steps(gradient_accumulation_steps, use_tpu)
  global_step = tf.train.get_or_create_global_step()
  learning_rate = learning_rate_schedule(global_step, init_lr, num_train_steps, num_warmup_steps)

  optimizer = AdamWeightDecayOptimizer(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
      fused=fused)
  if use_tpu:
    optimizer = tf.tpu.CrossShardOptimizer(optimizer)

  tvars = tf.trainable_variables()
  if loss_scaling:
    if gradient_accumulation_steps > 1 or tf.distribute.has_strategy() or use_tpu:
      raise ValueError("loss scaling (float16) trains on one GPU without gradient accumulation: "
                       "use bfloat16, or gradient_accumulation_steps=1 and no strategy")
    return apply_with_dynamic_loss_scale(optimizer, loss, tvars, global_step)
  grads = tf.gradients(loss, tvars)

  if gradient_accumulation_steps > 1 or tf.distribute.has_strategy():
    return _apply_once_per_update(optimizer, grads, tvars, global_step,
                                  gradient_accumulation_steps)

  # BERT was pre-trained with this clipping; on TPU it applies to each shard's gradients.
  grads, _ = tf.clip_by_global_norm(grads, clip_norm=CLIP_NORM)

  return optimizer.apply_gradients(zip(grads, tvars), global_step=global_step)


INITIAL_LOSS_SCALE = 2.0 ** 15
# Updates in a row with finite gradients after which the loss scale doubles.
LOSS_SCALE_GROWTH_STEPS = 2000


def apply_with_dynamic_loss_scale(optimizer, loss, tvars, global_step):
  """Makes one clipped update from the gradients of `loss * scale`, skipped if not finite.

  float16 gradients underflow unless the loss is scaled up. The gradients of the scaled loss
  are divided by the scale (in float32); when any is inf or NaN the update is skipped (no
  variable, Adam slot or global step changes) and the scale halves; after
  LOSS_SCALE_GROWTH_STEPS finite updates in a row it doubles. The scale is a local variable
  (not in checkpoints, which keep the original layout): a resumed run starts again at
  INITIAL_LOSS_SCALE.

  Args:
    optimizer: a `tf.train.Optimizer`.
    loss: float32 Tensor [], the loss to minimise.
    tvars: the resource variables to train.
    global_step: the global step variable.

  Returns:
    The training `Operation`.
  """
  with tf.variable_scope("loss_scale"):
    scale = tf.get_variable(
        "scale", [], tf.float32, initializer=tf.constant_initializer(INITIAL_LOSS_SCALE),
        trainable=False, collections=[tf.GraphKeys.LOCAL_VARIABLES], use_resource=True)
    good_steps = tf.get_variable(
        "good_steps", [], tf.int64, initializer=tf.zeros_initializer(), trainable=False,
        collections=[tf.GraphKeys.LOCAL_VARIABLES], use_resource=True)
  current_scale = scale.read_value()
  grads = [None if grad is None else _scale(grad, 1.0 / current_scale)
           for grad in tf.gradients(loss * current_scale, tvars)]
  all_finite = tf.reduce_all([
      tf.reduce_all(tf.is_finite(grad.values if isinstance(grad, tf.IndexedSlices) else grad))
      for grad in grads if grad is not None])
  clipped, _ = tf.clip_by_global_norm(grads, clip_norm=CLIP_NORM)

  def update():
    with tf.control_dependencies([optimizer.apply_gradients(zip(clipped, tvars),
                                                            global_step=global_step)]):
      return tf.identity(all_finite)

  updated = tf.cond(all_finite, update, lambda: all_finite)
  grow = tf.logical_and(updated, good_steps + 1 >= LOSS_SCALE_GROWTH_STEPS)
  new_scale = tf.where(updated, tf.where(grow, current_scale * 2.0, current_scale),
                       tf.maximum(current_scale / 2.0, 1.0))
  new_good_steps = tf.where(tf.logical_and(updated, tf.logical_not(grow)), good_steps + 1,
                            tf.zeros_like(good_steps))
  return tf.group(scale.assign(new_scale), good_steps.assign(new_good_steps))


def learning_rate_schedule(global_step, init_lr, num_train_steps, num_warmup_steps):
  """Returns the learning rate at `global_step`: linear warm-up, then linear decay to zero.

  While global_step < num_warmup_steps the rate is init_lr * global_step / num_warmup_steps.
  Afterwards it is the linear decay from init_lr at step 0 to 0.0 at num_train_steps (and 0.0
  beyond), so warm-up ends on the decay line rather than at init_lr.

  Args:
    global_step: int64 Tensor of shape [] (or the global step variable).
    init_lr: float, the learning rate the decay starts from.
    num_train_steps: positive int, the step at which the rate reaches 0.0.
    num_warmup_steps: int, the number of warm-up steps; 0, None or negative for none.

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


def _check_num_train_steps(num_train_steps):
  """Raises ValueError for a number of steps that would silently give a NaN learning rate."""
  if num_train_steps <= 0:
    raise ValueError(
        "num_train_steps must be positive (the learning rate decays to zero over it), got %r; "
        "too few training examples for the batch size?" % (num_train_steps,))


def _check_accumulation_steps(gradient_accumulation_steps, use_tpu):
  """Raises ValueError for a number of micro-batches per update that cannot work."""
  steps = gradient_accumulation_steps
  if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
    raise ValueError("gradient_accumulation_steps must be a positive int, got %r" %
                     (gradient_accumulation_steps,))
  if use_tpu and gradient_accumulation_steps > 1:
    raise ValueError(
        "gradient_accumulation_steps=%d: gradient accumulation is not supported on TPU; "
        "use more TPU cores for a larger batch" % gradient_accumulation_steps)


def _apply_once_per_update(optimizer, grads, tvars, global_step, gradient_accumulation_steps):
  """Builds the train op that sums the gradients of all micro-batches and replicas, then updates.

  Runs in a replica context (the default one when there is no strategy). Each replica scales the
  gradients of its micro-batch's mean loss by 1 / (N * R), N micro-batches per update and R
  replicas, so that the sum over micro-batches and replicas is the gradient of the global
  batch's mean loss.

  tf.clip_by_global_norm measures an embedding lookup's gradient (tf.IndexedSlices) row by row,
  one row per looked-up id, before the rows of a repeated id are summed. Summing micro-batches
  and replicas adds those rows together, so the squared norm of the rows is taken here, before
  any sum, and summed alongside the gradients: the update is clipped by the same norm as one
  device training on the whole batch, repeated ids and all.

  Args:
    optimizer: the `AdamWeightDecayOptimizer`.
    grads: list of gradients (Tensor, IndexedSlices or None), one per variable of `tvars`.
    tvars: list of the trainable variables.
    global_step: the global step variable.
    gradient_accumulation_steps: positive int, N.

  Returns:
    The training `Operation`.
  """
  replica_context = tf.distribute.get_replica_context()
  if replica_context is None:
    raise ValueError("create_optimizer must be called in a replica context of the tf.distribute "
                     "strategy, e.g. in an Estimator's model_fn, not in its cross-replica scope")
  share = 1.0 / (gradient_accumulation_steps * replica_context.num_replicas_in_sync)
  grads_and_vars = [(_scale(grad, share), var) for grad, var in zip(grads, tvars)
                    if grad is not None]
  is_sparse = [isinstance(grad, tf.IndexedSlices) for grad, _ in grads_and_vars]
  sparse_squared_norm = tf.add_n(
      [tf.constant(0.0)] + [tf.reduce_sum(tf.square(grad.values)) for grad, _ in grads_and_vars
                            if isinstance(grad, tf.IndexedSlices)])

  if gradient_accumulation_steps == 1:
    update = functools.partial(_update_once, optimizer=optimizer, global_step=global_step,
                               is_sparse=is_sparse)
    return replica_context.merge_call(update, args=(grads_and_vars, sparse_squared_norm))

  sums_and_vars, norm_sum, accumulators = _accumulate(grads_and_vars, sparse_squared_norm)
  with tf.variable_scope("gradient_accumulation"):
    micro_step = tf.get_variable(
        "micro_step", [], tf.int64, initializer=tf.zeros_initializer(), trainable=False,
        collections=[tf.GraphKeys.LOCAL_VARIABLES], use_resource=True)
  update = functools.partial(
      _update_every_n_runs, optimizer=optimizer, global_step=global_step, is_sparse=is_sparse,
      accumulators=accumulators, micro_step=micro_step,
      gradient_accumulation_steps=gradient_accumulation_steps)
  return replica_context.merge_call(update, args=(sums_and_vars, norm_sum))


def _accumulate(grads_and_vars, sparse_squared_norm):
  """Adds this run's gradients and sparse squared norm to one replica's running sums.

  Returns:
    (list of (sum so far, variable), float32 [] sum of the squared norms so far, list of the
    accumulator variables, to be zeroed after each update).

  Raises:
    ValueError: for a reference variable, which cannot be updated inside the tf.cond that
      chooses between accumulating and updating.
  """
  for _, var in grads_and_vars:
    if _is_reference_variable(var):
      raise ValueError(
          "gradient accumulation updates the variables inside a tf.cond, which needs resource "
          "variables (TF2's default); %s is a reference variable" % var.name)
  with tf.variable_scope("gradient_accumulation"):
    accumulators = [_local_accumulator(var.name.split(":")[0], var.shape)
                    for _, var in grads_and_vars]
    norm_accumulator = _local_accumulator("sparse_squared_norm", [])
  sums_and_vars = [
      (accumulator.assign_add(_densify(grad, var)).read_value(), var)
      for accumulator, (grad, var) in zip(accumulators, grads_and_vars)]
  norm_sum = norm_accumulator.assign_add(sparse_squared_norm).read_value()
  return sums_and_vars, norm_sum, accumulators + [norm_accumulator]


def _local_accumulator(name, shape):
  """Creates a float32 variable of zeros for one replica's running sum; not in checkpoints.

  Each replica of a strategy keeps its own copy (ON_READ synchronization); a checkpoint restore
  leaves it at zero, so a run resumed from a checkpoint starts its update afresh.
  """
  return tf.get_variable(
      name, shape, tf.float32, initializer=tf.zeros_initializer(), trainable=False,
      collections=[tf.GraphKeys.LOCAL_VARIABLES], use_resource=True,
      synchronization=tf.VariableSynchronization.ON_READ,
      aggregation=tf.VariableAggregation.SUM)


def _update_every_n_runs(strategy, sums_and_vars, norm_sum, optimizer, global_step, is_sparse,
                         accumulators, micro_step, gradient_accumulation_steps):
  """Cross-replica context: on every N-th run, updates once and empties the accumulators."""

  def update_and_restart():
    update = _update_once(strategy, sums_and_vars, norm_sum, optimizer, global_step, is_sparse)
    with tf.control_dependencies([update]):
      restarts = [strategy.extended.update(accumulator, _assign_zeros)
                  for accumulator in accumulators]
      restarts.append(micro_step.assign(0, read_value=False))
    return tf.group(restarts)

  def count_micro_step():
    return tf.group(micro_step.assign_add(1, read_value=False))

  return tf.cond(micro_step >= gradient_accumulation_steps - 1,
                 update_and_restart, count_micro_step)


def _update_once(strategy, grads_and_vars, sparse_squared_norm, optimizer, global_step,
                 is_sparse):
  """Cross-replica context: sums the replicas' gradients, clips them and applies them once.

  One batched all-reduce sums the gradients and the squared norm of their sparse rows. Every
  replica then applies the same clipped sum to its own copy of each variable, so the learning
  rate and the weight decay act once per update; the global step then advances by one.

  Args:
    strategy: the `tf.distribute.Strategy` (the default one when there is none).
    grads_and_vars: list of (gradient, variable), each gradient one value per replica.
    sparse_squared_norm: float32 [] per replica, the squared norm of the IndexedSlices rows.
    optimizer: the `AdamWeightDecayOptimizer`.
    global_step: the global step variable.
    is_sparse: list of bools, whether each gradient was an IndexedSlices, measured in
      sparse_squared_norm rather than by its sum (which accumulation makes dense).

  Returns:
    The update `Operation`.
  """
  variables = [var for _, var in grads_and_vars]
  reduced = strategy.extended.batch_reduce_to(
      tf.distribute.ReduceOp.SUM, grads_and_vars + [(sparse_squared_norm, variables[0])])
  grads, sparse_squared_norm = reduced[:-1], reduced[-1]

  # All replicas hold the same sums; the norm is taken from the first replica's copy.
  def first_copy(value):
    return strategy.experimental_local_results(value)[0]

  dense_squared_norms = [tf.reduce_sum(tf.square(first_copy(grad)))
                         for grad, sparse in zip(grads, is_sparse) if not sparse]
  global_norm = tf.sqrt(tf.add_n(dense_squared_norms + [first_copy(sparse_squared_norm)]))

  # The optimizer's own hooks, called as the base apply_gradients would, but on gradients
  # already summed: the base class would sum the replicas a second time.
  with tf.init_scope():
    optimizer._create_slots(variables)  # pylint: disable=protected-access
  with tf.name_scope(optimizer.get_name()):
    optimizer._prepare()  # pylint: disable=protected-access
    apply_clipped = functools.partial(_apply_clipped, optimizer, global_norm)
    updates = []
    for grad, var in zip(grads, variables):
      updates.extend(strategy.extended.update(var, apply_clipped, args=(grad,), group=False))
    with tf.control_dependencies(updates):
      return strategy.extended.update(global_step, _increment, group=True)


def _apply_clipped(optimizer, global_norm, var, grad):
  """Clips `grad` by the global norm and applies it to one replica's copy of `var`."""
  (grad,), _ = tf.clip_by_global_norm([grad], clip_norm=CLIP_NORM, use_norm=global_norm)
  if isinstance(grad, tf.IndexedSlices):
    return optimizer._apply_sparse(grad, var)  # pylint: disable=protected-access
  return optimizer._apply_dense(grad, var)  # pylint: disable=protected-access


def _scale(grad, factor):
  """Multiplies a Tensor or IndexedSlices gradient by the float `factor`."""
  if isinstance(grad, tf.IndexedSlices):
    return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
  return grad * factor


def _densify(grad, var):
  """Returns the gradient as a Tensor of var's shape, an IndexedSlices' repeated rows summed."""
  if isinstance(grad, tf.IndexedSlices):
    return _to_dense(grad.values, grad.indices, var)
  return grad


def _assign_zeros(var):
  return var.assign(tf.zeros_like(var), read_value=False)


def _increment(step):
  return step.assign_add(1, read_value=False)


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

  With fused=True the same update runs through TensorFlow's in-place Adam kernel (`ApplyAdam`
  with its bias correction turned off), after decaying p by learning_rate * weight_decay_rate
  * p: no copies of p, m and v are made, which saves about 10% of a fine-tuning step of a
  small BERT on CPU. The kernel computes 1 - beta_2 in float32 (0.00099998713 for 0.999), so
  v and the step differ from the original's by about 1e-5 relative: the same training, not
  the same bits, which is why the default keeps the original's arithmetic.
  """

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               fused=False,
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
      fused: bool, whether to update in place with TensorFlow's Adam kernel (see above).
      name: name scope of the update ops.
    """
    super().__init__(use_locking=False, name=name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay
    self.fused = fused
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
    if self.fused:
      return self._apply_fused(grad, var, m, v)

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

  def _apply_fused(self, grad, var, m, v):
    """The update of `_apply_dense` by the in-place kernels; returns the op."""
    decay = []
    if self._do_use_weight_decay(self._get_variable_name(var.name)):
      # After the gradient, which needs every gradient (clipping): the forward and backward
      # passes may read the variable's own buffer, which an earlier decay would change.
      with tf.control_dependencies([grad]):
        decay.append(var.assign_sub(self._learning_rate_tensor * self.weight_decay_rate * var,
                                    read_value=False))
    # With both "powers" 0, ApplyAdam's bias-corrected rate is the learning rate itself.
    arguments = dict(beta1_power=0.0, beta2_power=0.0, lr=self._learning_rate_tensor,
                     beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon, grad=grad)
    with tf.control_dependencies(decay):
      if _is_reference_variable(var):
        return tf.raw_ops.ApplyAdam(var=var, m=m, v=v, **arguments).op
      return tf.raw_ops.ResourceApplyAdam(var=var.handle, m=m.handle, v=v.handle, **arguments)

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


def _is_reference_variable(var):
  """Whether `var` is a TF1 reference variable (its dtype is a `_ref` type), not a resource one."""
  return var.dtype != var.dtype.base_dtype


def _to_dense(values, indices, var):
  """Sums the rows `values` [N, ...] into a zero Tensor of var's shape at rows `indices` [N]."""
  return tf.math.unsorted_segment_sum(values, indices, num_segments=var.shape[0])
