"""Tests of BertModel's mixed precision: bfloat16/float16 compute, float32 variables."""

import json

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import modeling
from test_modeling import (FIXTURE_CONFIG, fixture_model_outputs, model_outputs, random_inputs,
                           run_from_checkpoint, tiny_config)

HALF_TYPES = [tf.bfloat16, tf.float16]

# Loose bounds on the distance to the float32 model: bfloat16 keeps 8 bits of mantissa, float16
# 11; the fixture's activations are of order 1.
TOLERANCES = {tf.bfloat16: dict(sequence=0.08, pooled=0.01),
              tf.float16: dict(sequence=0.02, pooled=0.004)}


# ---------------------------------------------------------------- precision names


def test_get_compute_type_maps_the_precision_names():
  assert modeling.get_compute_type("fp32") == tf.float32
  assert modeling.get_compute_type("bf16") == tf.bfloat16
  assert modeling.get_compute_type("fp16") == tf.float16
  with pytest.raises(ValueError, match=r"Unsupported precision 'float16': supported are "
                     r"'fp32', 'bf16', 'fp16'"):
    modeling.get_compute_type("float16")


@pytest.mark.parametrize("compute_type", [tf.int32, tf.float64, "bf16"])
def test_bert_model_rejects_other_compute_types(compute_type):
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=r"Unsupported compute_type .*: supported are "
                       r"tf.float32, tf.bfloat16 and tf.float16"):
      modeling.BertModel(tiny_config(), False, tf.zeros([1, 4], tf.int32),
                         compute_type=compute_type)
    assert not tf.global_variables()


# ---------------------------------------------------------------- graph and variables


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_variables_are_float32_with_the_original_names_shapes_and_order(reference,
                                                                          compute_type):
  with tf.Graph().as_default():
    config = modeling.BertConfig.from_json_file(FIXTURE_CONFIG)
    model = modeling.BertModel(config, True, tf.constant(reference["input_ids"]),
                               compute_type=compute_type)
    variables = tf.global_variables()
    assert variables == tf.trainable_variables()
    assert [v.name for v in variables] == list(reference["variable_names"])
    assert [v.shape.as_list() for v in variables] == [
        json.loads(shape) for shape in reference["variable_shapes"]]
    assert {v.dtype.base_dtype for v in variables} == {tf.float32}
    assert model.get_embedding_table() is variables[0]
    for tensor in model_outputs(model).values():
      assert tensor.dtype == tf.float32
    half_tensors = [op for op in tf.get_default_graph().get_operations()
                    if op.outputs and op.outputs[0].dtype == compute_type]
    assert any(op.type == "MatMul" for op in half_tensors)
    assert not any(op.type == "Softmax" for op in half_tensors)


def test_float32_graph_has_no_half_precision_tensors():
  with tf.Graph().as_default():
    modeling.BertModel(tiny_config(), True, tf.zeros([2, 5], tf.int32),
                       tf.ones([2, 5], tf.int32), compute_type=tf.float32)
    dtypes = {tensor.dtype.base_dtype for op in tf.get_default_graph().get_operations()
              for tensor in op.outputs}
  assert tf.float32 in dtypes
  assert not dtypes & set(HALF_TYPES)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_outputs_are_close_to_the_float32_reference(reference, compute_type):
  outputs = fixture_model_outputs(reference, compute_type=compute_type)

  # The embeddings are computed in float32: exact.
  np.testing.assert_allclose(outputs["embedding_output"], reference["embedding_output"],
                             rtol=1e-5, atol=1e-5)
  tolerance = TOLERANCES[compute_type]
  real = reference["input_mask"].astype(bool)
  for name in ("sequence_output", "all_encoder_layers"):
    difference = np.abs(outputs[name] - reference[name])[..., real, :]
    assert difference.max() < tolerance["sequence"], name
    assert difference.max() > 0.0, name
  np.testing.assert_allclose(outputs["pooled_output"], reference["pooled_output"],
                             atol=tolerance["pooled"])


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_padding_is_ignored_in_half_precision(compute_type):
  input_ids, input_mask, token_type_ids = random_inputs(seed=6, batch_size=2, seq_length=8)
  input_mask[:, 5:] = 0
  other_ids = input_ids.copy()
  other_ids[:, 5:] = (other_ids[:, 5:] + 1) % 50
  with tf.Graph().as_default():
    ids = tf.placeholder(tf.int32, [2, 8])
    model = modeling.BertModel(tiny_config(), False, ids, tf.constant(input_mask),
                               tf.constant(token_type_ids), compute_type=compute_type)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      first, second = (session.run(model.get_sequence_output(), {ids: x})
                       for x in (input_ids, other_ids))
  np.testing.assert_array_equal(first[:, :5], second[:, :5])
  assert not np.allclose(first[:, 5:], second[:, 5:])


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_gradients_are_float32_and_follow_the_float32_ones(compute_type):
  input_ids, input_mask, token_type_ids = random_inputs(seed=11, batch_size=4, seq_length=12)
  gradients = {}
  for dtype in (tf.float32, compute_type):
    with tf.Graph().as_default():
      tf.set_random_seed(3)
      model = modeling.BertModel(tiny_config(initializer_range=0.2), False,
                                 tf.constant(input_ids), tf.constant(input_mask),
                                 tf.constant(token_type_ids), compute_type=dtype)
      loss = tf.reduce_sum(tf.square(model.get_pooled_output())) + tf.reduce_mean(
          model.get_sequence_output())
      assert loss.dtype == tf.float32
      variables = tf.trainable_variables()
      grads = [tf.convert_to_tensor(grad) for grad in tf.gradients(loss, variables)]
      assert all(grad.dtype == tf.float32 for grad in grads)
      with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        gradients[dtype] = session.run(grads)

  for exact, approximate in zip(gradients[tf.float32], gradients[compute_type]):
    assert np.all(np.isfinite(approximate))
    cosine = np.sum(exact * approximate) / (
        np.linalg.norm(exact) * np.linalg.norm(approximate) + 1e-30)
    assert cosine > 0.95 or np.linalg.norm(exact) < 1e-6


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_training_dropout_runs_in_half_precision(compute_type):
  config = tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
  with tf.Graph().as_default():
    model = modeling.BertModel(config, True, tf.constant(random_inputs(seed=12)[0]),
                               compute_type=compute_type)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      first, second = (session.run(model.get_sequence_output()) for _ in range(2))
  assert np.all(np.isfinite(first)) and not np.allclose(first, second)


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_dropout_of_a_half_precision_tensor_keeps_its_type_and_rate(compute_type):
  with tf.Graph().as_default():
    dropped = modeling.dropout(tf.ones([200, 200], compute_type), 0.3)
    assert dropped.dtype == compute_type
    with tf.Session() as session:
      values = session.run(tf.cast(dropped, tf.float32))
  assert 0.27 < np.mean(values == 0.0) < 0.33
  np.testing.assert_allclose(values[values != 0.0], 1 / 0.7, rtol=1e-2)


@pytest.mark.slow
def test_checkpoint_written_by_a_bfloat16_graph_loads_into_a_float32_graph(tmp_path):
  inputs = random_inputs(seed=13)
  with tf.Graph().as_default():
    tf.set_random_seed(4)
    model = modeling.BertModel(tiny_config(), False, *(tf.constant(x) for x in inputs),
                               compute_type=tf.bfloat16)
    step = tf.train.GradientDescentOptimizer(0.5).minimize(
        tf.reduce_sum(model.get_pooled_output()))
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      session.run(step)
      bfloat16_pooled = session.run(model.get_pooled_output())
      checkpoint = tf.train.Saver().save(session, str(tmp_path / "bf16.ckpt"))

  with tf.Graph().as_default():
    model = modeling.BertModel(tiny_config(), False, *(tf.constant(x) for x in inputs))
    expected = [(v.op.name, v.shape.as_list()) for v in tf.trainable_variables()]
    pooled = run_from_checkpoint(model, checkpoint, model.get_pooled_output())
  reader = tf.train.load_checkpoint(checkpoint)
  assert sorted(expected) == sorted(tf.train.list_variables(checkpoint))
  assert {reader.get_variable_to_dtype_map()[name] for name, _ in expected} == {tf.float32}
  np.testing.assert_allclose(pooled, bfloat16_pooled, atol=0.02)
  assert not np.allclose(pooled, 0.0)


# ---------------------------------------------------------------- layer functions


def test_layer_norm_of_half_precision_input_is_computed_in_float32():
  x = np.random.RandomState(14).normal(3.0, 2.0, (4, 16)).astype(np.float32)
  with tf.Graph().as_default():
    with tf.variable_scope("half", custom_getter=modeling.float32_variable_storage_getter):
      output = modeling.layer_norm(tf.cast(tf.constant(x), tf.bfloat16))
    assert output.dtype == tf.bfloat16
    assert [(v.op.name, v.dtype.base_dtype) for v in tf.global_variables()] == [
        ("half/LayerNorm/beta", tf.float32), ("half/LayerNorm/gamma", tf.float32)]
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      actual = session.run(tf.cast(output, tf.float32))
  rounded = x.astype(tf.bfloat16.as_numpy_dtype).astype(np.float32)
  expected = (rounded - rounded.mean(-1, keepdims=True)) / np.sqrt(
      rounded.var(-1, keepdims=True) + 1e-12)
  np.testing.assert_allclose(actual, expected, atol=0.02)


def test_custom_getter_casts_half_precision_requests_only():
  with tf.Graph().as_default():
    with tf.variable_scope("scope", custom_getter=modeling.float32_variable_storage_getter):
      half = tf.get_variable("half", [2], dtype=tf.float16)
      full = tf.get_variable("full", [2])
    with tf.variable_scope("scope", reuse=True,
                           custom_getter=modeling.float32_variable_storage_getter):
      again = tf.get_variable("half", [2], dtype=tf.bfloat16)
    assert half.dtype == tf.float16 and again.dtype == tf.bfloat16
    assert full is tf.global_variables()[1]
    assert [(v.op.name, v.dtype.base_dtype) for v in tf.global_variables()] == [
        ("scope/half", tf.float32), ("scope/full", tf.float32)]


@pytest.mark.parametrize("compute_type", HALF_TYPES)
def test_attention_softmax_is_float32_and_masks_in_half_precision(compute_type):
  rng = np.random.RandomState(15)
  from_values = rng.normal(size=(2, 3, 8)).astype(np.float32)
  to_values = rng.normal(size=(2, 5, 8)).astype(np.float32)
  other_to_values = to_values.copy()
  other_to_values[1, 2:] += 100.0
  mask = np.ones((2, 3, 5), np.float32)
  mask[1, :, 2:] = 0.0
  with tf.Graph().as_default():
    to_tensor = tf.placeholder(tf.float32, [2, 5, 8])
    with tf.variable_scope("attention", custom_getter=modeling.float32_variable_storage_getter):
      context = modeling.attention_layer(
          tf.cast(tf.constant(from_values), compute_type), tf.cast(to_tensor, compute_type),
          tf.constant(mask), num_attention_heads=2, size_per_head=4)
    softmax_inputs = [op.inputs[0].dtype for op in tf.get_default_graph().get_operations()
                      if op.type == "Softmax"]
    assert context.dtype == compute_type and softmax_inputs == [tf.float32]
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      first, second = (session.run(tf.cast(context, tf.float32), {to_tensor: x})
                       for x in (to_values, other_to_values))
  # Keys and values of masked positions, even huge ones, do not reach the context.
  assert np.all(np.isfinite(second))
  np.testing.assert_array_equal(first[1], second[1])
  np.testing.assert_array_equal(first[0], second[0])
