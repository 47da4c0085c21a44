"""Tests of gradient accumulation: N micro-batches per update equal one batch of N times the size.

The problem below has a batch: each example looks up two rows of an embedding table (ids repeat
within and across micro-batches, so the lookup's sparse gradient has repeated rows) and goes
through a LayerNorm-named scale, a decayed kernel and a bias. Its loss comes in two sizes: one
whose gradient is clipped at every update, and one small enough that it never is (clipping
and Adam would hide a gradient summed with the wrong scale; without clipping, Adam's first
moment shows it).
"""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import estimator_setup
import optimization
import runner
import script_io

INIT_LR = 0.1
NUM_UPDATES = 4
NUM_WARMUP_STEPS = 1
BATCH_SIZE = 8
CLIPPED, UNCLIPPED = 0.5, 0.01  # loss scales

_DATA = np.random.RandomState(0)
LOOKUP_IDS = _DATA.randint(0, 6, size=(NUM_UPDATES, BATCH_SIZE, 2)).astype(np.int32)
FEATURES = 0.1 * _DATA.randn(NUM_UPDATES, BATCH_SIZE, 3).astype(np.float32)
_INIT = np.random.RandomState(1)
INITIAL_VALUES = {
    "bert/embeddings/word_embeddings": _INIT.randn(6, 3),
    "bert/embeddings/LayerNorm/gamma": np.ones(3),
    "dense/kernel": _INIT.randn(3, 2),
    "cls/output_bias": np.zeros(2),
}
UNUSED_VARIABLE = "bert/pooler/dense/kernel"


def _build_problem(use_resource=True, loss_scale=CLIPPED):
  """Returns the placeholders (ids [B, 2], features [B, 3]) and the mean loss [] of the batch."""
  ids = tf.placeholder(tf.int32, [None, 2], name="ids")
  features = tf.placeholder(tf.float32, [None, 3], name="features")
  params = {name: tf.get_variable(name, initializer=tf.constant(value, tf.float32),
                                  use_resource=use_resource)
            for name, value in INITIAL_VALUES.items()}
  tf.get_variable(UNUSED_VARIABLE, [2, 2], initializer=tf.ones_initializer(),
                  use_resource=use_resource)
  looked_up = tf.reduce_sum(tf.gather(params["bert/embeddings/word_embeddings"], ids), axis=1)
  hidden = looked_up * params["bert/embeddings/LayerNorm/gamma"] + features
  logits = tf.matmul(hidden, params["dense/kernel"]) + params["cls/output_bias"]
  loss = loss_scale * tf.reduce_mean(tf.reduce_sum(tf.square(logits), axis=1))
  return ids, features, loss


def _batch(update, micro_batch=0, num_micro_batches=1):
  size = BATCH_SIZE // num_micro_batches
  rows = slice(micro_batch * size, (micro_batch + 1) * size)
  return LOOKUP_IDS[update, rows], FEATURES[update, rows]


def _variables(session):
  return {v.op.name: session.run(v) for v in tf.global_variables()}


def _train(num_micro_batches, loss_scale=CLIPPED):
  """Trains NUM_UPDATES updates; returns the global variables after each and the global steps."""
  graph = tf.Graph()
  with graph.as_default():
    ids, features, loss = _build_problem(loss_scale=loss_scale)
    if num_micro_batches == 1:
      train_op = optimization.create_optimizer(
          loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, use_tpu=False)
    else:
      train_op = optimization.create_optimizer(
          loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, use_tpu=False,
          gradient_accumulation_steps=num_micro_batches)
    global_step = tf.train.get_global_step()
    states, steps = [], []
    with tf.Session() as session:
      session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
      for update in range(NUM_UPDATES):
        for micro_batch in range(num_micro_batches):
          batch_ids, batch_features = _batch(update, micro_batch, num_micro_batches)
          session.run(train_op, {ids: batch_ids, features: batch_features})
          steps.append(session.run(global_step))
        states.append(_variables(session))
  return states, steps


def _assert_same_variables(actual, expected, message=""):
  assert sorted(actual) == sorted(expected)
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=1e-5, atol=1e-6,
                               err_msg="%s %s" % (name, message))


def test_problem_clips_or_not_and_repeats_ids():
  """Guards the test below: with dense sums instead of rows, the clipped update would differ."""
  with tf.Graph().as_default():
    ids, features, loss = _build_problem()
    small_loss = loss * (UNCLIPPED / CLIPPED)
    grads = tf.gradients(loss, tf.trainable_variables())
    norm_by_rows = tf.linalg.global_norm(grads)
    norm_of_sums = tf.linalg.global_norm([tf.convert_to_tensor(g) for g in grads if g is not None])
    small_norm = tf.linalg.global_norm(tf.gradients(small_loss, tf.trainable_variables()))
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      for update in range(NUM_UPDATES):
        batch_ids, batch_features = _batch(update)
        assert len(np.unique(batch_ids)) < batch_ids.size
        by_rows, of_sums, small = session.run([norm_by_rows, norm_of_sums, small_norm],
                                              {ids: batch_ids, features: batch_features})
        assert by_rows > 1.0 and of_sums > 1.0  # clipping is active
        assert small < 0.5  # not even with twice the gradient
        # 1000 times the tolerance of the comparisons below.
        assert abs(by_rows - of_sums) > 0.01 * by_rows


@pytest.mark.parametrize("loss_scale", [CLIPPED, UNCLIPPED], ids=["clipped", "unclipped"])
@pytest.mark.parametrize("num_micro_batches", [2, 4])
def test_micro_batches_match_one_batch(num_micro_batches, loss_scale):
  one_batch, _ = _train(1, loss_scale)
  accumulated, _ = _train(num_micro_batches, loss_scale)
  for update, (actual, expected) in enumerate(zip(accumulated, one_batch)):
    _assert_same_variables(actual, expected, "after update %d" % update)
    assert actual["global_step"] == update + 1
  # The variables did move, by different amounts in different updates.
  assert not np.allclose(accumulated[-1]["dense/kernel"], INITIAL_VALUES["dense/kernel"])


def test_global_step_counts_updates_not_micro_batches():
  _, steps = _train(4)
  assert steps == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4]


def test_accumulators_are_local_and_left_out_of_checkpoints(tmp_path):
  saved = {}
  for num_micro_batches in (1, 2):
    with tf.Graph().as_default():
      _, _, loss = _build_problem()
      optimization.create_optimizer(loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False,
                                    gradient_accumulation_steps=num_micro_batches)
      local_names = sorted(v.op.name for v in tf.local_variables())
      with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        path = tf.train.Saver().save(session, str(tmp_path / str(num_micro_batches)))
      saved[num_micro_batches] = dict(tf.train.list_variables(path))
  assert local_names == sorted(
      ["gradient_accumulation/%s" % name for name in INITIAL_VALUES]
      + ["gradient_accumulation/sparse_squared_norm", "gradient_accumulation/micro_step"])
  assert saved[2] == saved[1]
  assert "dense/kernel/adam_m" in saved[2] and UNUSED_VARIABLE in saved[2]


def test_resumed_run_starts_its_update_afresh(tmp_path):
  """A checkpoint taken mid-update restores the model; the partial sums restart from zero."""
  checkpoint = str(tmp_path / "model.ckpt")
  with tf.Graph().as_default():
    ids, features, loss = _build_problem()
    train_op = optimization.create_optimizer(loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False,
                                             gradient_accumulation_steps=2)
    with tf.Session() as session:
      session.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
      for micro_batch in range(3):  # one update and half of the next
        batch_ids, batch_features = _batch(micro_batch // 2, micro_batch % 2, 2)
        session.run(train_op, {ids: batch_ids, features: batch_features})
      tf.train.Saver().save(session, checkpoint)

  def resume(num_micro_batches):
    with tf.Graph().as_default():
      ids, features, loss = _build_problem()
      train_op = optimization.create_optimizer(
          loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False,
          gradient_accumulation_steps=num_micro_batches)
      with tf.Session() as session:
        session.run(tf.local_variables_initializer())
        tf.train.Saver().restore(session, checkpoint)
        assert session.run(tf.train.get_global_step()) == 1
        for micro_batch in range(num_micro_batches):
          batch_ids, batch_features = _batch(2, micro_batch, num_micro_batches)
          session.run(train_op, {ids: batch_ids, features: batch_features})
        return _variables(session)

  resumed = resume(2)
  assert resumed["global_step"] == 2
  _assert_same_variables(resumed, resume(1))


def test_one_micro_batch_builds_the_original_graph():
  op_types = []
  for kwargs in ({}, {"gradient_accumulation_steps": 1}):
    with tf.Graph().as_default() as graph:
      _, _, loss = _build_problem()
      train_op = optimization.create_optimizer(
          loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False, **kwargs)
      assert not tf.local_variables()
      assert train_op.type == "AssignAddVariableOp"
      op_types.append([op.type for op in graph.get_operations()])
  assert op_types[0] == op_types[1]
  assert "If" not in op_types[0] and "StatelessIf" not in op_types[0]


@pytest.mark.parametrize("steps,use_tpu,message", [
    (0, False, "gradient_accumulation_steps must be a positive int, got 0"),
    (-2, False, "gradient_accumulation_steps must be a positive int, got -2"),
    (2.0, False, "gradient_accumulation_steps must be a positive int, got 2.0"),
    (True, False, "gradient_accumulation_steps must be a positive int, got True"),
    (2, True, "not supported on TPU"),
])
def test_bad_accumulation_steps(steps, use_tpu, message):
  with tf.Graph().as_default():
    _, _, loss = _build_problem()
    with pytest.raises(ValueError, match=message):
      optimization.create_optimizer(loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, use_tpu,
                                    gradient_accumulation_steps=steps)


def test_reference_variables_are_refused():
  with tf.Graph().as_default():
    _, _, loss = _build_problem(use_resource=False)
    with pytest.raises(ValueError, match="needs resource variables.*is a reference variable"):
      optimization.create_optimizer(loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False,
                                    gradient_accumulation_steps=2)


def test_cross_replica_context_is_refused():
  with tf.Graph().as_default():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
      _, _, loss = _build_problem()
      with pytest.raises(ValueError, match="replica context"):
        optimization.create_optimizer(loss, INIT_LR, NUM_UPDATES, NUM_WARMUP_STEPS, False)


@pytest.mark.parametrize("batch_size,steps,expected", [(32, 1, 32), (32, 4, 8), (6, 6, 1)])
def test_micro_batch_size(batch_size, steps, expected):
  assert estimator_setup.micro_batch_size(batch_size, steps) == expected


@pytest.mark.parametrize("batch_size,steps,message", [
    (32, 3, r"--train_batch_size=32 cannot be split into --gradient_accumulation_steps=3 "
            r"micro-batches"),
    (4, 8, r"--train_batch_size=4 cannot be split into --gradient_accumulation_steps=8"),
])
def test_micro_batch_size_errors(batch_size, steps, message):
  with pytest.raises(script_io.InputError, match=message):
    estimator_setup.micro_batch_size(batch_size, steps)


def _model_fn(features, labels, mode, params):
  raise AssertionError("make_estimator must not call the model_fn")


class _InputFnCalled(Exception):
  pass


def test_make_estimator_feeds_micro_batches(tmp_path):
  batch_sizes = []

  def input_fn(params):
    batch_sizes.append(params["batch_size"])
    raise _InputFnCalled()

  estimator = estimator_setup.make_estimator(
      _model_fn, str(tmp_path), estimator_setup.RunOptions(gradient_accumulation_steps=4),
      train_batch_size=32)
  assert isinstance(estimator, runner.Runner)
  with pytest.raises(_InputFnCalled):
    estimator.train(input_fn, max_steps=1)
  assert batch_sizes == [8]


@pytest.mark.parametrize("overrides,message", [
    ({"gradient_accumulation_steps": 3}, "--train_batch_size=32 cannot be split"),
    ({"use_tpu": True, "gradient_accumulation_steps": 2},
     "--gradient_accumulation_steps=2: gradient accumulation is not supported with --use_tpu"),
])
def test_make_estimator_rejects_bad_accumulation(tmp_path, overrides, message):
  with pytest.raises(script_io.InputError, match=message):
    estimator_setup.make_estimator(_model_fn, str(tmp_path),
                                   estimator_setup.RunOptions(**overrides), train_batch_size=32)


def test_scripts_check_the_micro_batches_before_reading_data():
  options = estimator_setup.RunOptions(gradient_accumulation_steps=4)
  estimator_setup.check_scale_options(options, 32, {"--do_eval": True})
  with pytest.raises(script_io.InputError, match="--train_batch_size=30 cannot be split"):
    estimator_setup.check_scale_options(options, 30, {"--do_eval": False})
