"""Tests of optimization.py: the schedule, the update maths against numpy, slots and checkpoints.

The tiny problem below has gradients that are easy to write down in numpy: linear terms give
constant gradients, quadratic terms 0.5 * k * p^2 give k * p. It has an embedding lookup with a
repeated id (a sparse gradient), a LayerNorm-named, a layer_norm-named and a bias-named variable
(no weight decay), a decayed kernel, and a variable the loss does not use (no gradient).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import optimization
import support

INIT_LR = 0.1
NUM_TRAIN_STEPS = 5
NUM_WARMUP_STEPS = 2
NUM_STEPS_RUN = 5

LOOKUP_IDS = np.array([0, 2, 2])
EMBEDDING_COEFFICIENTS = np.array([[1.5, -2.0, 0.5], [0.5, 1.0, -1.5], [1.0, 0.5, 2.0]])
GAMMA_CURVATURE = np.array([2.0, -1.0, 3.0])
BIAS_COEFFICIENTS = np.array([0.3, -0.7, 1.1, 0.2])
BETA_COEFFICIENTS = np.array([-0.4, 0.9])
KERNEL_CURVATURE = np.array([[1.0, 2.0, -1.0, 0.5], [3.0, -2.0, 1.0, 1.0], [0.5, 0.5, 2.0, -3.0]])

# name -> (initial value, decayed?)
INITIAL_VALUES = {
    "bert/embeddings/word_embeddings": np.arange(15.0).reshape(5, 3) / 7.0 - 1.0,
    "bert/encoder/layer_0/output/LayerNorm/gamma": np.array([1.0, 0.8, 1.2]),
    "cls/predictions/output_bias": np.array([0.1, -0.2, 0.3, 0.0]),
    "head/layer_norm/beta": np.array([0.5, -0.5]),
    "dense/kernel": np.arange(12.0).reshape(3, 4) / 6.0 - 1.0,
}
DECAYED = {"bert/embeddings/word_embeddings", "dense/kernel"}
UNUSED_VARIABLE = "bert/pooler/dense/kernel"


def _build_tiny_problem(use_resource=True):
  """Creates the tiny problem's variables in the default graph; returns its float32 loss []."""
  params = {
      name: tf.get_variable(name, initializer=tf.constant(value, tf.float32),
                            use_resource=use_resource)
      for name, value in INITIAL_VALUES.items()}
  tf.get_variable(UNUSED_VARIABLE, [2, 2], initializer=tf.ones_initializer(),
                  use_resource=use_resource)

  def const(value):
    return tf.constant(value, tf.float32)

  looked_up = tf.gather(params["bert/embeddings/word_embeddings"], LOOKUP_IDS)
  return (tf.reduce_sum(const(EMBEDDING_COEFFICIENTS) * looked_up)
          + 0.5 * tf.reduce_sum(const(GAMMA_CURVATURE)
                                * tf.square(params["bert/encoder/layer_0/output/LayerNorm/gamma"]))
          + tf.reduce_sum(const(BIAS_COEFFICIENTS) * params["cls/predictions/output_bias"])
          + tf.reduce_sum(const(BETA_COEFFICIENTS) * params["head/layer_norm/beta"])
          + 0.5 * tf.reduce_sum(const(KERNEL_CURVATURE) * tf.square(params["dense/kernel"])))


def _numpy_gradients(params):
  embedding_grad = np.zeros_like(params["bert/embeddings/word_embeddings"])
  np.add.at(embedding_grad, LOOKUP_IDS, EMBEDDING_COEFFICIENTS)
  return {
      "bert/embeddings/word_embeddings": embedding_grad,
      "bert/encoder/layer_0/output/LayerNorm/gamma":
          GAMMA_CURVATURE * params["bert/encoder/layer_0/output/LayerNorm/gamma"],
      "cls/predictions/output_bias": BIAS_COEFFICIENTS,
      "head/layer_norm/beta": BETA_COEFFICIENTS,
      "dense/kernel": KERNEL_CURVATURE * params["dense/kernel"],
  }


def _numpy_learning_rate(step, init_lr, num_train_steps, num_warmup_steps):
  if num_warmup_steps and step < num_warmup_steps:
    return init_lr * step / num_warmup_steps
  return init_lr * (1.0 - min(step, num_train_steps) / num_train_steps)


def _numpy_training_states(num_steps):
  """Yields (params, adam_m, adam_v, global norm) after each of num_steps training steps.

  tf.clip_by_global_norm measures the embedding lookup's sparse gradient by its rows, one per
  looked-up id, before the rows of a repeated id are summed; the original clips the same way.
  """
  params = {name: value.copy() for name, value in INITIAL_VALUES.items()}
  m = {name: np.zeros_like(value) for name, value in params.items()}
  v = {name: np.zeros_like(value) for name, value in params.items()}
  for step in range(num_steps):
    lr = _numpy_learning_rate(step, INIT_LR, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS)
    grads = _numpy_gradients(params)
    global_norm = np.sqrt(sum(np.sum(np.square(g)) for name, g in grads.items()
                              if name != "bert/embeddings/word_embeddings")
                          + np.sum(np.square(EMBEDDING_COEFFICIENTS)))
    for name, grad in grads.items():
      grad = grad / max(global_norm, 1.0)
      m[name] = 0.9 * m[name] + 0.1 * grad
      v[name] = 0.999 * v[name] + 0.001 * np.square(grad)
      update = m[name] / (np.sqrt(v[name]) + 1e-6)
      if name in DECAYED:
        update += 0.01 * params[name]
      params[name] = params[name] - lr * update
    yield ({k: x.copy() for k, x in params.items()}, dict(m), dict(v), global_norm)


def _values(session, suffix=""):
  """Returns the tiny problem's variables, or their slots `suffix`, by variable name."""
  by_name = {v.op.name: v for v in tf.global_variables()}
  return session.run({name: by_name[name + suffix] for name in INITIAL_VALUES})


@pytest.mark.parametrize("fused", [False, True], ids=["original", "fused"])
@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_training_steps_match_numpy(use_resource, fused):
  graph = tf.Graph()
  with graph.as_default():
    loss = _build_tiny_problem(use_resource)
    train_op = optimization.create_optimizer(
        loss, INIT_LR, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS, use_tpu=False, fused=fused)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      for step, (params, m, v, global_norm) in enumerate(
          _numpy_training_states(NUM_STEPS_RUN)):
        assert global_norm > 1.0  # so that clipping matters
        session.run(train_op)
        actual_params = _values(session)
        actual_m = _values(session, "/adam_m")
        actual_v = _values(session, "/adam_v")
        # The fused kernel takes 1 - beta_2 in float32: 1.3e-5 relative off in v.
        loose = 10 if fused else 1
        for name in INITIAL_VALUES:
          message = "%s after step %d" % (name, step)
          np.testing.assert_allclose(actual_params[name], params[name], rtol=1e-5 * loose,
                                     atol=1e-6 * loose, err_msg=message)
          np.testing.assert_allclose(actual_m[name], m[name], rtol=1e-5 * loose,
                                     atol=1e-7 * loose, err_msg=message)
          np.testing.assert_allclose(actual_v[name], v[name], rtol=1e-5 * loose,
                                     atol=1e-9 * loose, err_msg=message)


def test_first_warmup_step_moves_only_the_moments():
  graph = tf.Graph()
  with graph.as_default():
    train_op = optimization.create_optimizer(
        _build_tiny_problem(), INIT_LR, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS, use_tpu=False)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      session.run(train_op)
      for name, initial in INITIAL_VALUES.items():
        np.testing.assert_array_equal(_values(session)[name], initial.astype(np.float32))
        assert np.any(_values(session, "/adam_m")[name] != 0)


def test_sparse_gradient_is_applied_densely_like_the_original():
  embeddings = _train(optimization.create_optimizer, NUM_STEPS_RUN)[
      "bert/embeddings/word_embeddings"]
  initial = INITIAL_VALUES["bert/embeddings/word_embeddings"]
  # Rows 1, 3 and 4 are never looked up, so m stays 0 there and only the weight decay moves them.
  learning_rates = [0.0, 0.05, 0.06, 0.04, 0.02]
  np.testing.assert_allclose(embeddings[[1, 3, 4]],
                             initial[[1, 3, 4]] * np.prod([1 - 0.01 * lr for lr in learning_rates]),
                             rtol=1e-6)
  assert not np.allclose(embeddings[[1, 3, 4]], initial[[1, 3, 4]], rtol=1e-4, atol=0)


@pytest.mark.parametrize("num_warmup_steps,expected", [
    (3, {0: 0.0, 1: 0.1 / 3, 2: 0.2 / 3, 3: 0.07, 4: 0.06, 9: 0.01, 10: 0.0, 15: 0.0}),
    (0, {0: 0.1, 1: 0.09, 5: 0.05, 10: 0.0, 11: 0.0}),
    (None, {0: 0.1, 3: 0.07}),
    (-2, {0: 0.1, 3: 0.07}),  # No warm-up, as in the original.
    (20, {0: 0.0, 5: 0.025, 19: 0.095, 20: 0.0}),
])
def test_learning_rate_schedule(num_warmup_steps, expected):
  graph = tf.Graph()
  with graph.as_default():
    step = tf.placeholder(tf.int64, [])
    learning_rate = optimization.learning_rate_schedule(
        step, init_lr=0.1, num_train_steps=10, num_warmup_steps=num_warmup_steps)
    assert learning_rate.dtype == tf.float32 and learning_rate.shape == []
    with tf.Session() as session:
      for global_step, lr in expected.items():
        assert session.run(learning_rate, {step: global_step}) == pytest.approx(lr, rel=1e-6), \
            global_step
        assert _numpy_learning_rate(global_step, 0.1, 10, num_warmup_steps) == \
            pytest.approx(lr)


def test_global_step_advances_once_per_run():
  graph = tf.Graph()
  with graph.as_default():
    train_op = optimization.create_optimizer(_build_tiny_problem(), INIT_LR, 10, 2, False)
    global_step = tf.train.get_global_step()
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      for expected in range(1, 4):
        session.run(train_op)
        assert session.run(global_step) == expected


def test_checkpoint_holds_the_original_slot_names(tmp_path):
  graph = tf.Graph()
  with graph.as_default():
    train_op = optimization.create_optimizer(_build_tiny_problem(), INIT_LR, 10, 2, False)
    saver = tf.train.Saver()
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      session.run(train_op)
      path = saver.save(session, str(tmp_path / "model.ckpt"))

  saved = dict(tf.train.list_variables(path))
  expected = {"global_step": []}
  for name, value in INITIAL_VALUES.items():
    for suffix in ("", "/adam_m", "/adam_v"):
      expected[name + suffix] = list(value.shape)
  expected[UNUSED_VARIABLE] = [2, 2]  # no gradient, so no slots, as in the original
  assert saved == expected
  assert "bert/embeddings/word_embeddings/adam_m" in saved


def test_use_tpu_wraps_in_cross_shard_optimizer():
  graph = tf.Graph()
  with graph.as_default():
    train_op = optimization.create_optimizer(_build_tiny_problem(), INIT_LR, 10, 2, use_tpu=True)
  op_types = {op.type for op in graph.get_operations()}
  assert "CrossReplicaSum" in op_types
  assert train_op.type == "AssignAddVariableOp"
  assert train_op.inputs[0].op.name == "global_step"
  slot_names = {v.op.name for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}
  assert "dense/kernel/adam_v" in slot_names


def test_does_not_override_the_base_apply_gradients():
  assert (optimization.AdamWeightDecayOptimizer.apply_gradients
          is tf.train.Optimizer.apply_gradients)


def test_weight_decay_exclusions():
  optimizer = optimization.AdamWeightDecayOptimizer(
      0.1, weight_decay_rate=0.01,
      exclude_from_weight_decay=optimization.EXCLUDE_FROM_WEIGHT_DECAY)
  assert optimizer._get_variable_name("bert/pooler/dense/kernel:0") == "bert/pooler/dense/kernel"
  assert optimizer._get_variable_name("no_suffix") == "no_suffix"
  for excluded in ("bert/encoder/layer_3/attention/output/LayerNorm/beta",
                   "bert/embeddings/LayerNorm/gamma", "head/layer_norm/gamma",
                   "cls/predictions/output_bias", "bert/pooler/dense/bias"):
    assert not optimizer._do_use_weight_decay(excluded), excluded
  for decayed in ("bert/embeddings/word_embeddings", "cls/squad/output_weights",
                  "bert/encoder/layer_0/intermediate/dense/kernel"):
    assert optimizer._do_use_weight_decay(decayed), decayed
  no_decay = optimization.AdamWeightDecayOptimizer(0.1)
  assert not no_decay._do_use_weight_decay("bert/pooler/dense/kernel")


@pytest.mark.parametrize("num_train_steps,num_warmup_steps,message", [
    (0, 0, "num_train_steps must be positive"),
    (-3, 0, "num_train_steps must be positive"),
])
def test_bad_step_counts(num_train_steps, num_warmup_steps, message):
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=message):
      optimization.create_optimizer(
          _build_tiny_problem(), INIT_LR, num_train_steps, num_warmup_steps, False)


# The installed `bert` package is the original code, used as an oracle.
def _train(create_optimizer, num_steps, restore_from=None, save_to=None):
  """Trains the tiny problem; returns all global variables by name."""
  graph = tf.Graph()
  with graph.as_default():
    train_op = create_optimizer(
        _build_tiny_problem(), INIT_LR, NUM_TRAIN_STEPS, NUM_WARMUP_STEPS, False)
    saver = tf.train.Saver()
    # The original advances the global step in a tf.group with no order against the
    # learning-rate read: with several threads the read may see either value. One thread
    # runs the ops in a fixed order.
    config = tf.ConfigProto(inter_op_parallelism_threads=1, intra_op_parallelism_threads=1)
    with tf.Session(config=config) as session:
      session.run(tf.global_variables_initializer())
      if restore_from:
        saver.restore(session, restore_from)
      for _ in range(num_steps):
        session.run(train_op)
      if save_to:
        saver.save(session, save_to)
      return {v.op.name: session.run(v) for v in tf.global_variables()}


def _assert_same_variables(actual, expected):
  assert sorted(actual) == sorted(expected)
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_matches_the_original_create_optimizer():
  from bert import optimization as original
  _assert_same_variables(_train(optimization.create_optimizer, NUM_STEPS_RUN),
                         _train(original.create_optimizer, NUM_STEPS_RUN))


@pytest.mark.parametrize("first,second", [("original", "ours"), ("ours", "original")])
def test_training_resumes_across_implementations(tmp_path, first, second):
  from bert import optimization as original
  create = {"original": original.create_optimizer, "ours": optimization.create_optimizer}
  checkpoint = str(tmp_path / "model.ckpt")
  _train(create[first], 2, save_to=checkpoint)
  resumed = _train(create[second], 3, restore_from=checkpoint)
  assert resumed["global_step"] == 5
  _assert_same_variables(resumed, _train(create[first], 5))


MIRRORED_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf2
    cpu = tf2.config.list_physical_devices("CPU")[0]
    tf2.config.set_logical_device_configuration(cpu, [tf2.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow.compat.v1 as tf
    import optimization

    BATCH = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0

    def minimize(examples, loss_scale, global_step):
      kernel = tf.get_variable("dense/kernel", [3, 2], initializer=tf.constant_initializer(0.5))
      bias = tf.get_variable("dense/bias", [2], initializer=tf.constant_initializer(0.1))
      loss = tf.reduce_mean(tf.square(tf.matmul(examples, kernel) + bias)) * loss_scale
      optimizer = optimization.AdamWeightDecayOptimizer(
          0.1, weight_decay_rate=0.01, exclude_from_weight_decay=["bias"],
          fused=sys.argv[1] == "fused")
      return optimizer.minimize(loss, global_step=global_step)

    def replica_step():
      replica = tf.distribute.get_replica_context().replica_id_in_sync_group
      examples = tf.gather(tf.constant(BATCH.reshape(2, 2, 3)), replica)
      return minimize(examples, 0.5, tf.train.get_global_step())

    def train(num_replicas):
      with tf.Graph().as_default():
        if num_replicas == 1:
          train_op = minimize(tf.constant(BATCH), 1.0, tf.train.get_or_create_global_step())
        else:
          strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
          with strategy.scope():
            tf.train.get_or_create_global_step()
            train_op = strategy.group(strategy.extended.call_for_each_replica(replica_step))
        config = tf.ConfigProto(device_count={"CPU": 2}, inter_op_parallelism_threads=16)
        with tf.Session(config=config) as session:
          session.run(tf.global_variables_initializer())
          for _ in range(3):
            session.run(train_op)
          return {v.op.name: session.run(v) for v in tf.global_variables()}

    one, two = train(1), train(2)
    assert sorted(one) == sorted(two), (sorted(one), sorted(two))
    assert one["global_step"] == two["global_step"] == 3
    for name in one:
      np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-7, err_msg=name)
    print("two replicas match one")
""")


@pytest.mark.slow
@pytest.mark.parametrize("update", ["original", "fused"])
def test_two_mirrored_replicas_match_one_device(tmp_path, update):
  """The base class's apply_gradients sums the replicas' gradients and steps once."""
  script = tmp_path / "mirrored.py"
  script.write_text(MIRRORED_SCRIPT)
  env = dict(os.environ, PYTHONPATH=support.REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, str(script), update], env=env, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "two replicas match one" in result.stdout


# ------------------------------------------------------------------------------------------------
# Dynamic loss scaling (--precision=fp16).

def _loss_scaling_problem(loss_scaling, fused=False):
  """A loss whose gradient is the fed `gradient`; returns (train_op, gradient placeholder)."""
  weights = tf.get_variable("w", [2], initializer=tf.constant_initializer(1.0),
                            use_resource=True)
  gradient = tf.placeholder(tf.float32, [])
  loss = tf.reduce_sum(weights * gradient)
  train_op = optimization.create_optimizer(loss, 0.1, 10, 0, False, loss_scaling=loss_scaling,
                                           fused=fused)
  return train_op, gradient


@pytest.mark.parametrize("fused", [False, True], ids=["original", "fused"])
def test_loss_scaling_skips_updates_with_non_finite_gradients(fused):
  with tf.Graph().as_default():
    train_op, gradient = _loss_scaling_problem(loss_scaling=True, fused=fused)
    scale, = [var for var in tf.local_variables() if var.op.name == "loss_scale/scale"]
    with tf.Session() as session:
      session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
      before = session.run(tf.global_variables())
      for bad_gradient in (np.inf, np.nan):
        session.run(train_op, {gradient: bad_gradient})
      after = session.run(tf.global_variables())
      # Weights, Adam slots and the global step are untouched; the scale halved twice.
      for old, new in zip(before, after):
        np.testing.assert_array_equal(old, new)
      assert session.run(scale) == optimization.INITIAL_LOSS_SCALE / 4
      session.run(train_op, {gradient: 1.0})
      assert session.run(tf.train.get_global_step()) == 1
      assert session.run(scale) == optimization.INITIAL_LOSS_SCALE / 4
      scaled_weights = session.run(tf.trainable_variables()[0])
    # Not in checkpoints: the scale and its counter are local variables.
    assert not [var for var in tf.global_variables() if "loss_scale" in var.name]

  with tf.Graph().as_default():
    train_op, gradient = _loss_scaling_problem(loss_scaling=False)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      session.run(train_op, {gradient: 1.0})
      np.testing.assert_allclose(scaled_weights, session.run(tf.trainable_variables()[0]),
                                 rtol=1e-5 if fused else 1e-6)


def test_loss_scaling_refuses_gradient_accumulation():
  with tf.Graph().as_default():
    loss = tf.reduce_sum(tf.get_variable("w", [2], use_resource=True))
    with pytest.raises(ValueError, match="loss scaling"):
      optimization.create_optimizer(loss, 0.1, 10, 0, False, gradient_accumulation_steps=2,
                                    loss_scaling=True)
