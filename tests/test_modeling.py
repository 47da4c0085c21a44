"""Tests of modeling.py: parity with the original's fixture and package, names, errors."""

import collections
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import modeling
import support
from support import fixture_path
from support import REPO_DIR

FIXTURE_CONFIG = fixture_path("modeling", "bert_config.json")
FIXTURE_CHECKPOINT = fixture_path("modeling", "bert_model.ckpt")


def tiny_config(**overrides):
  fields = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, type_vocab_size=3, max_position_embeddings=16)
  fields.update(overrides)
  return modeling.BertConfig(**fields)


def random_inputs(seed, batch_size=3, seq_length=10, vocab_size=50, type_vocab_size=3):
  """Returns int32 input_ids, input_mask (with padding), token_type_ids."""
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(0, vocab_size, (batch_size, seq_length)).astype(np.int32)
  lengths = rng.randint(1, seq_length + 1, batch_size)
  lengths[0] = seq_length
  input_mask = (np.arange(seq_length)[None, :] < lengths[:, None]).astype(np.int32)
  token_type_ids = rng.randint(0, type_vocab_size, (batch_size, seq_length)).astype(np.int32)
  return input_ids, input_mask, token_type_ids


def model_outputs(model):
  return dict(sequence_output=model.get_sequence_output(),
              pooled_output=model.get_pooled_output(),
              all_encoder_layers=tf.stack(model.get_all_encoder_layers()),
              embedding_output=model.get_embedding_output())


def run_from_checkpoint(model, checkpoint, fetches, feed_dict=None):
  """Restores `checkpoint` into the model's variables and runs `fetches`."""
  assignment_map, _ = modeling.get_assignment_map_from_checkpoint(
      tf.trainable_variables(), checkpoint)
  tf.train.init_from_checkpoint(checkpoint, assignment_map)
  with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    return session.run(fetches, feed_dict)


def fixture_model_outputs(reference, **model_options):
  """Runs the fixture checkpoint's model on the reference inputs; returns `model_outputs`."""
  with tf.Graph().as_default():
    config = modeling.BertConfig.from_json_file(FIXTURE_CONFIG)
    model = modeling.BertModel(
        config, is_training=False,
        input_ids=tf.constant(reference["input_ids"]),
        input_mask=tf.constant(reference["input_mask"]),
        token_type_ids=tf.constant(reference["token_type_ids"]),
        **model_options)
    return run_from_checkpoint(model, FIXTURE_CHECKPOINT, model_outputs(model))


# ---------------------------------------------------------------- BertConfig


def test_config_defaults_are_the_originals():
  config = modeling.BertConfig(vocab_size=100)
  assert config.to_dict() == dict(
      vocab_size=100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
      intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=16,
      initializer_range=0.02)


def test_config_json_round_trip_and_format(tmp_path):
  config = modeling.BertConfig.from_json_file(FIXTURE_CONFIG)
  assert config.hidden_size == 64 and config.num_hidden_layers == 2
  assert config.type_vocab_size == 2 and config.vocab_size == 30522

  text = config.to_json_string()
  assert text == json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
  assert text.startswith('{\n  "attention_probs_dropout_prob": 0.1,\n')
  path = tmp_path / "config.json"
  path.write_text(text)
  assert modeling.BertConfig.from_json_file(str(path)).to_dict() == config.to_dict()


def test_config_from_dict_keeps_every_key_and_to_dict_copies():
  config = modeling.BertConfig.from_dict({"vocab_size": 7, "hidden_act": "gelu_exact",
                                          "model_type": "bert"})
  assert config.vocab_size == 7 and config.hidden_act == "gelu_exact"
  assert config.model_type == "bert"
  assert config.num_hidden_layers == 12
  as_dict = config.to_dict()
  as_dict["vocab_size"] = 8
  assert config.vocab_size == 7


def test_config_from_malformed_json_file(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"vocab_size": 10,')
  with pytest.raises(ValueError, match="bad.json is not a valid JSON file"):
    modeling.BertConfig.from_json_file(str(path))
  path.write_text("[1, 2]")
  with pytest.raises(ValueError, match="bad.json must hold a JSON object"):
    modeling.BertConfig.from_json_file(str(path))


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=30, num_attention_heads=4),
     r"hidden_size \(30\) is not a multiple of num_attention_heads \(4\)"),
    (dict(vocab_size=None), r"vocab_size must be a positive integer, got None"),
    (dict(num_hidden_layers=0), r"num_hidden_layers must be a positive integer, got 0"),
    (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob must be a probability in \[0, 1\)"),
    (dict(hidden_act="swish"), r"Unsupported activation 'swish'"),
])
def test_config_validate_names_the_bad_field(overrides, message):
  with pytest.raises(ValueError, match=message):
    tiny_config(**overrides).validate()
  tiny_config().validate()


def test_dropout_probabilities_matter_for_training_only():
  # As in the original, whose model without training sets them to 0.0 before using them.
  config = tiny_config(hidden_dropout_prob=1.0, attention_probs_dropout_prob=-0.5)
  config.validate(is_training=False)
  with tf.Graph().as_default():
    modeling.BertModel(config, False, tf.zeros([1, 4], tf.int32))
    with pytest.raises(ValueError, match=r"hidden_dropout_prob must be a probability"):
      modeling.BertModel(config, True, tf.zeros([1, 4], tf.int32))


# ---------------------------------------------------------------- parity


def test_variable_names_shapes_and_order_are_the_originals(reference):
  with tf.Graph().as_default():
    config = modeling.BertConfig.from_json_file(FIXTURE_CONFIG)
    modeling.BertModel(config, False, tf.constant(reference["input_ids"]))
    variables = tf.trainable_variables()
    assert [v.name for v in variables] == list(reference["variable_names"])
    assert [json.dumps(v.shape.as_list()) for v in variables] == [
        json.dumps(json.loads(shape)) for shape in reference["variable_shapes"]]


@pytest.mark.parametrize("use_one_hot_embeddings", [False, True])
def test_outputs_match_the_reference_fixture(reference, use_one_hot_embeddings):
  outputs = fixture_model_outputs(reference, use_one_hot_embeddings=use_one_hot_embeddings)
  for name, value in outputs.items():
    np.testing.assert_allclose(value, reference[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_assignment_map_covers_the_checkpoint_variables_of_the_model():
  with tf.Graph().as_default():
    config = modeling.BertConfig.from_json_file(FIXTURE_CONFIG)
    modeling.BertModel(config, False, tf.zeros([2, 5], tf.int32))
    extra = tf.get_variable("not_in_checkpoint", shape=[3])
    tvars = tf.trainable_variables()
    assignment_map, initialized = modeling.get_assignment_map_from_checkpoint(
        tvars, FIXTURE_CHECKPOINT)

  model_names = [v.name[:-2] for v in tvars if v is not extra]
  checkpoint_names = [name for name, _ in tf.train.list_variables(FIXTURE_CHECKPOINT)]
  assert isinstance(assignment_map, collections.OrderedDict)
  assert list(assignment_map) == [name for name in checkpoint_names if name in model_names]
  assert sorted(assignment_map) == sorted(model_names)
  assert all(key == value for key, value in assignment_map.items())
  assert set(initialized) == set(model_names) | {name + ":0" for name in model_names}
  assert "not_in_checkpoint" not in initialized
  assert not any(name.startswith("cls/") for name in assignment_map)


@pytest.fixture(scope="module")
def original_modeling():
  """The original package's `bert.modeling`, with a stand-in for the removed tf.contrib.

  Only `tf.contrib.layers.layer_norm` is needed; the stand-in, written here independently of
  modeling.py, computes it as the contrib function did. The real layer norm is covered by the
  fixture test.
  """
  def contrib_layer_norm(inputs, begin_norm_axis, begin_params_axis, scope=None):
    assert begin_norm_axis == -1 and begin_params_axis == -1
    with tf.variable_scope(scope, default_name="LayerNorm"):
      beta = tf.get_variable("beta", inputs.shape[-1:], initializer=tf.zeros_initializer())
      gamma = tf.get_variable("gamma", inputs.shape[-1:], initializer=tf.ones_initializer())
      mean, variance = tf.nn.moments(inputs, [-1], keep_dims=True)
      return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, 1e-12)

  contrib = types.ModuleType("tensorflow.contrib")
  contrib.layers = types.ModuleType("tensorflow.contrib.layers")
  contrib.layers.layer_norm = contrib_layer_norm
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(sys.modules, "tensorflow.contrib", contrib)
    patch.setitem(sys.modules, "tensorflow.contrib.layers", contrib.layers)
    from bert import modeling as original  # pylint: disable=import-outside-toplevel
  return original


def build_and_run(module, config_fields, inputs, checkpoint=None, **model_kwargs):
  """Builds module.BertModel(is_training=False); returns (outputs, variable names).

  The variables are initialised randomly (seed 1), or restored from `checkpoint`; the returned
  outputs carry the variable values too, under "var:NAME", so that a checkpoint can be written.
  """
  with tf.Graph().as_default():
    tf.set_random_seed(1)
    input_ids, input_mask, token_type_ids = (tf.constant(x) for x in inputs)
    model = module.BertModel(module.BertConfig(**config_fields), False, input_ids,
                             input_mask=input_mask, token_type_ids=token_type_ids,
                             **model_kwargs)
    fetches = model_outputs(model)
    names = [v.name for v in tf.trainable_variables()]
    if checkpoint:
      return run_from_checkpoint(model, checkpoint, fetches), names
    fetches.update(("var:" + v.op.name, v) for v in tf.trainable_variables())
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      return session.run(fetches), names


def save_checkpoint(values, path):
  with tf.Graph().as_default():
    variables = [tf.Variable(value, name=name[len("var:"):])
                 for name, value in values.items() if name.startswith("var:")]
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver(variables).save(session, path)


ORIGINAL_USES_TF_LAYERS = pytest.mark.filterwarnings(
    "ignore:`tf.layers.dense` is deprecated:UserWarning")


@support.needs_the_original_models
@ORIGINAL_USES_TF_LAYERS
@pytest.mark.parametrize("hidden_act", ["gelu", "relu"])
def test_outputs_match_the_original_package(original_modeling, tmp_path, hidden_act):
  config_fields = tiny_config(hidden_act=hidden_act, initializer_range=0.3).to_dict()
  inputs = random_inputs(seed=3)
  expected, original_names = build_and_run(original_modeling, config_fields, inputs)
  checkpoint = str(tmp_path / "original.ckpt")
  save_checkpoint(expected, checkpoint)

  actual, names = build_and_run(modeling, config_fields, inputs, checkpoint)
  assert names == original_names
  for name, value in actual.items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)


@support.needs_the_original_models
@ORIGINAL_USES_TF_LAYERS
def test_defaults_for_mask_and_token_types_match_the_original(original_modeling, tmp_path):
  config_fields = tiny_config().to_dict()
  input_ids = random_inputs(seed=4)[0]
  with tf.Graph().as_default():
    tf.set_random_seed(2)
    model = original_modeling.BertModel(original_modeling.BertConfig(**config_fields), False,
                                        tf.constant(input_ids))
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      expected = session.run(model_outputs(model))
      checkpoint = tf.train.Saver().save(session, str(tmp_path / "original.ckpt"))

  with tf.Graph().as_default():
    model = modeling.BertModel(modeling.BertConfig(**config_fields), False,
                               tf.constant(input_ids))
    actual = run_from_checkpoint(model, checkpoint, model_outputs(model))
  for name, value in actual.items():
    np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------- BertModel behaviour


def test_output_shapes_and_getters():
  with tf.Graph().as_default():
    input_ids = tf.placeholder(tf.int32, [None, None])
    model = modeling.BertModel(tiny_config(), True, input_ids)
    assert model.get_sequence_output().shape.as_list() == [None, None, 32]
    assert model.get_pooled_output().shape.as_list() == [None, 32]
    assert model.get_embedding_output().shape.as_list() == [None, None, 32]
    assert len(model.get_all_encoder_layers()) == 2
    assert model.get_all_encoder_layers()[-1] is model.get_sequence_output()
    assert model.get_embedding_table().op.name == "bert/embeddings/word_embeddings"
    assert model.get_embedding_table().shape.as_list() == [50, 32]
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      sequence = session.run(model.get_sequence_output(),
                             {input_ids: random_inputs(seed=0, batch_size=2, seq_length=7)[0]})
  assert sequence.shape == (2, 7, 32)


def test_custom_scope_names_the_variables():
  with tf.Graph().as_default():
    modeling.BertModel(tiny_config(), False, tf.zeros([1, 4], tf.int32), scope="encoder_a")
    names = [v.op.name for v in tf.trainable_variables()]
  assert names[0] == "encoder_a/embeddings/word_embeddings"
  assert names[-1] == "encoder_a/pooler/dense/bias"


def test_dropout_only_when_training_and_config_left_unchanged():
  config = tiny_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
  input_ids = random_inputs(seed=5)[0]
  results = {}
  for is_training in (False, True):
    with tf.Graph().as_default():
      model = modeling.BertModel(config, is_training, tf.constant(input_ids))
      with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        results[is_training] = [session.run(model.get_sequence_output()) for _ in range(2)]
  np.testing.assert_array_equal(results[False][0], results[False][1])
  assert not np.allclose(results[True][0], results[True][1])
  assert config.hidden_dropout_prob == 0.5 and config.attention_probs_dropout_prob == 0.5


def test_padding_tokens_do_not_change_the_real_tokens_outputs():
  input_ids, input_mask, token_type_ids = random_inputs(seed=6, batch_size=1, seq_length=8)
  input_mask[0, 5:] = 0
  other_ids = input_ids.copy()
  other_ids[0, 5:] = (other_ids[0, 5:] + 1) % 50
  with tf.Graph().as_default():
    ids = tf.placeholder(tf.int32, [1, 8])
    model = modeling.BertModel(tiny_config(), False, ids, tf.constant(input_mask),
                               tf.constant(token_type_ids))
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      first, second = (session.run(model.get_sequence_output(), {ids: x})
                       for x in (input_ids, other_ids))
  np.testing.assert_allclose(first[:, :5], second[:, :5], rtol=1e-6, atol=1e-6)
  assert not np.allclose(first[:, 5:], second[:, 5:])


@pytest.mark.parametrize("compute_type", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("positions", [[[], [], []], [[3, 1], [0, 5], [8, 8]]])
def test_output_positions_give_the_outputs_there_and_the_pooled_output(compute_type, positions):
  """The last layer at some positions (none: a classifier's), with the same variables."""
  input_ids, input_mask, token_type_ids = random_inputs(seed=8, batch_size=3, seq_length=9)
  input_mask[1, 4:] = 0
  positions = np.array(positions, dtype=np.int32).reshape([3, -1])
  outputs, names = {}, {}
  for output_positions in (None, positions):
    with tf.Graph().as_default():
      tf.set_random_seed(8)
      model = modeling.BertModel(
          tiny_config(), False, tf.constant(input_ids), tf.constant(input_mask),
          tf.constant(token_type_ids), compute_type=compute_type,
          output_positions=None if output_positions is None else tf.constant(output_positions))
      names[output_positions is None] = [v.op.name for v in tf.global_variables()]
      assert model.get_all_encoder_layers()[-1] is model.get_sequence_output()
      with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        outputs[output_positions is None] = session.run(
            [model.get_sequence_output(), model.get_pooled_output(),
             model.get_all_encoder_layers()[0]])
  assert names[True] == names[False]
  (sequence, pooled, first_layer), (full_sequence, full_pooled, full_first_layer) = (
      outputs[False], outputs[True])
  assert sequence.shape == positions.shape + (32,)
  tolerance = 1e-6 if compute_type == tf.float32 else 1e-2
  np.testing.assert_allclose(
      sequence, np.take_along_axis(full_sequence, positions[:, :, None], axis=1), atol=tolerance)
  np.testing.assert_allclose(pooled, full_pooled, atol=tolerance)
  np.testing.assert_array_equal(first_layer, full_first_layer)


# ---------------------------------------------------------------- bad input


def test_eager_mode_is_refused_with_how_to_build_the_model():
  # TensorFlow 2 executes eagerly outside a graph, as a script that does `import modeling` does.
  assert tf.executing_eagerly()
  with pytest.raises(RuntimeError, match=(
      r"^BertModel builds a TF1-style graph: build it inside `with tf.Graph\(\).as_default\(\):` "
      r"\(or an Estimator model_fn\), or call tf.compat.v1.disable_eager_execution\(\) first$")):
    modeling.BertModel(tiny_config(), False, tf.zeros([1, 4], tf.int32))


def test_assignment_map_warns_when_it_maps_no_variable(monkeypatch):
  warnings = []
  monkeypatch.setattr(tf.logging, "warning", lambda message, *args: warnings.append(
      message % args))
  with tf.Graph().as_default():
    tvars = [tf.get_variable("encoder/kernel", shape=[3])]
    assignment_map, _ = modeling.get_assignment_map_from_checkpoint(tvars, FIXTURE_CHECKPOINT)
    assert not assignment_map
    modeling.get_assignment_map_from_checkpoint([], FIXTURE_CHECKPOINT)
  assert warnings == [
      "None of the 1 variables given is in the checkpoint %s, so none will be initialised from "
      "it" % FIXTURE_CHECKPOINT,
      "None of the 0 variables given is in the checkpoint %s, so none will be initialised from "
      "it (tf.trainable_variables() is empty: was the model built?)" % FIXTURE_CHECKPOINT]


# The example of the API docs: run as written, from a folder outside the checkout, next to a
# Google model folder, with the checkout on PYTHONPATH.
API_EXAMPLE = textwrap.dedent("""\
    import tensorflow.compat.v1 as tf
    import modeling

    tf.disable_eager_execution()  # modeling builds TF1-style graphs, as in an Estimator model_fn

    config = modeling.BertConfig.from_json_file("uncased_L-12_H-768_A-12/bert_config.json")
    input_ids = tf.placeholder(tf.int32, [None, None])       # [batch_size, seq_length]
    input_mask = tf.placeholder(tf.int32, [None, None])      # 1 = token, 0 = padding
    token_type_ids = tf.placeholder(tf.int32, [None, None])  # 0 = sentence A, 1 = sentence B
    model = modeling.BertModel(config=config, is_training=False, input_ids=input_ids,
                               input_mask=input_mask, token_type_ids=token_type_ids)
    pooled = model.get_pooled_output()                       # [batch_size, hidden_size]

    checkpoint = "uncased_L-12_H-768_A-12/bert_model.ckpt"
    assignment_map, _ = modeling.get_assignment_map_from_checkpoint(tf.trainable_variables(),
                                                                    checkpoint)
    tf.train.init_from_checkpoint(checkpoint, assignment_map)

    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      print(session.run(pooled, {input_ids: [[101, 7592, 102]], input_mask: [[1, 1, 1]],
                                 token_type_ids: [[0, 0, 0]]}).shape)  # (1, 768)
    """)


@pytest.mark.slow
def test_api_example_runs_outside_the_checkout(tmp_path):
  model_dir = tmp_path / "uncased_L-12_H-768_A-12"
  model_dir.mkdir()
  shutil.copy(FIXTURE_CONFIG, str(model_dir / "bert_config.json"))
  for suffix in (".index", ".data-00000-of-00001"):
    shutil.copy(FIXTURE_CHECKPOINT + suffix, str(model_dir / ("bert_model.ckpt" + suffix)))
  (tmp_path / "example.py").write_text(API_EXAMPLE)
  env = dict(os.environ, PYTHONPATH=REPO_DIR, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run([sys.executable, "example.py"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # The fixture model is 64 wide; the pooled output of its checkpoint's weights, not random ones.
  assert result.stdout.strip() == "(1, 64)"
  assert "None of the" not in result.stderr


def test_heads_not_dividing_hidden_size_fails_before_building():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=r"hidden_size \(32\) is not a multiple of "
                       r"num_attention_heads \(5\)"):
      modeling.BertModel(tiny_config(num_attention_heads=5), False, tf.zeros([1, 4], tf.int32))
    assert not tf.global_variables()
    with pytest.raises(ValueError, match=r"hidden size \(32\) is not a multiple"):
      modeling.transformer_model(tf.zeros([1, 4, 32]), hidden_size=32, num_attention_heads=5)


def test_unknown_activation_fails_before_building():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=r"Unsupported activation 'gelu_new'.*'gelu_exact'"):
      modeling.BertModel(tiny_config(hidden_act="gelu_new"), False, tf.zeros([1, 4], tf.int32))
    assert not tf.global_variables()


def test_static_sequence_longer_than_position_table_fails_at_graph_build():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match=r"sequence length \(17\) is longer than "
                       r"max_position_embeddings \(16\)"):
      modeling.BertModel(tiny_config(), False, tf.zeros([2, 17], tf.int32))


def test_dynamic_sequence_longer_than_position_table_fails_at_run_time():
  with tf.Graph().as_default():
    input_ids = tf.placeholder(tf.int32, [None, None])
    model = modeling.BertModel(tiny_config(), False, input_ids)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      session.run(model.get_pooled_output(), {input_ids: np.zeros([2, 16], np.int32)})
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match=r"longer than max_position_embeddings \(16\)"):
        session.run(model.get_pooled_output(), {input_ids: np.zeros([2, 17], np.int32)})


@pytest.mark.parametrize("argument, shape, message", [
    ("input_ids", [2, 4, 1], r"`input_ids` in scope `` has rank 3 \(shape \(2, 4, 1\)\) but "
     r"rank 2 was expected"),
    ("input_mask", [2], r"`input_mask` in scope `` has rank 1 .* but rank 2 was expected"),
    ("token_type_ids", [2, 4, 4], r"`token_type_ids` .* has rank 3"),
    ("input_mask", [2, 5], r"`input_mask` has shape \(2, 5\) but `input_ids` has shape \(2, 4\)"),
])
def test_inputs_of_the_wrong_rank_or_shape(argument, shape, message):
  with tf.Graph().as_default():
    inputs = dict(input_ids=tf.zeros([2, 4], tf.int32))
    inputs[argument] = tf.zeros(shape, tf.int32)
    with pytest.raises(ValueError, match=message):
      modeling.BertModel(tiny_config(), False, **inputs)


def test_assert_rank_message_names_tensor_scope_and_ranks():
  with tf.Graph().as_default():
    with tf.variable_scope("outer"):
      tensor = tf.zeros([2, 3], name="x")
      modeling.assert_rank(tensor, [2, 3])
      with pytest.raises(ValueError, match=r"The tensor `outer/x:0` in scope `outer` has rank 2 "
                         r"\(shape \(2, 3\)\) but rank 3 or 4 was expected"):
        modeling.assert_rank(tensor, [3, 4])
      with pytest.raises(ValueError, match=r"`mine` .* rank 1 was expected"):
        modeling.get_shape_list(tensor, expected_rank=1, name="mine")


# ---------------------------------------------------------------- helpers


def evaluate(tensor, feed_dict=None):
  with tf.Session() as session:
    session.run(tf.global_variables_initializer())
    return session.run(tensor, feed_dict)


def test_get_activation_names():
  assert modeling.get_activation("relu") is tf.nn.relu
  assert modeling.get_activation("tanh") is tf.tanh
  assert modeling.get_activation("gelu") is modeling.gelu
  assert modeling.get_activation("GELU") is modeling.gelu
  assert modeling.get_activation("gelu_exact") is modeling.gelu_exact
  for no_activation in (None, "", "linear"):
    assert modeling.get_activation(no_activation) is None
  assert modeling.get_activation(tf.sigmoid) is tf.sigmoid
  with pytest.raises(ValueError, match=r"Unsupported activation 'Swish': supported are "
                     r"'linear', 'relu', 'gelu', 'gelu_exact', 'tanh', or a callable"):
    modeling.get_activation("Swish")


def test_gelu_is_the_tanh_approximation_and_gelu_exact_the_erf():
  x = np.linspace(-5.0, 5.0, 41).astype(np.float32)
  tanh_gelu = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  erf_gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
  with tf.Graph().as_default():
    approximate, exact = evaluate([modeling.gelu(tf.constant(x)),
                                   modeling.gelu_exact(tf.constant(x))])
  np.testing.assert_allclose(approximate, tanh_gelu, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(exact, erf_gelu, rtol=1e-5, atol=1e-6)
  assert np.abs(approximate - exact).max() > 1e-4


def test_layer_norm_variables_and_values():
  x = np.random.RandomState(7).normal(3.0, 2.0, (2, 3, 8)).astype(np.float32)
  with tf.Graph().as_default():
    with tf.variable_scope("block"):
      output = modeling.layer_norm(tf.constant(x))
    named = modeling.layer_norm(tf.constant(x), name="named")
    variables = tf.trainable_variables()
    assert [v.op.name for v in variables] == [
        "block/LayerNorm/beta", "block/LayerNorm/gamma", "named/beta", "named/gamma"]
    assert [v.shape.as_list() for v in variables] == [[8]] * 4
    actual, _ = evaluate([output, named])
  normalized = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
  np.testing.assert_allclose(actual, normalized, rtol=1e-4, atol=1e-5)


def test_dropout_helper():
  with tf.Graph().as_default():
    x = tf.ones([100, 100])
    assert modeling.dropout(x, 0.0) is x
    assert modeling.dropout(x, None) is x
    dropped = evaluate(modeling.layer_norm_and_dropout(x * tf.range(100.0), 0.5))
  assert 0.4 < np.mean(dropped == 0.0) < 0.6


def test_create_initializer_is_truncated_normal():
  with tf.Graph().as_default():
    tf.set_random_seed(0)
    values = evaluate(tf.get_variable("w", [200, 200],
                                      initializer=modeling.create_initializer(0.5)))
  assert np.abs(values).max() <= 1.0
  assert 0.35 < values.std() < 0.5


def test_embedding_lookup_gather_one_hot_and_several_ids_per_position():
  ids = np.array([[1, 2, 3], [4, 0, 1]], np.int32)
  with tf.Graph().as_default():
    with tf.variable_scope("gather"):
      gathered, table = modeling.embedding_lookup(tf.constant(ids), 5, embedding_size=4)
    with tf.variable_scope("gather", reuse=True):
      one_hot, _ = modeling.embedding_lookup(tf.constant(ids), 5, embedding_size=4,
                                             use_one_hot_embeddings=True)
      pairs, _ = modeling.embedding_lookup(tf.constant(np.stack([ids, ids], -1)), 5,
                                           embedding_size=4)
    assert table.op.name == "gather/word_embeddings"
    assert gathered.shape.as_list() == [2, 3, 4] and pairs.shape.as_list() == [2, 3, 8]
    gathered, one_hot, pairs, table = evaluate([gathered, one_hot, pairs, table])
  np.testing.assert_array_equal(gathered, table[ids])
  np.testing.assert_array_equal(one_hot, gathered)
  np.testing.assert_array_equal(pairs, np.concatenate([gathered, gathered], -1))


def test_embedding_postprocessor_adds_token_type_and_position_embeddings():
  token_type_ids = np.array([[0, 1, 1], [1, 0, 0]], np.int32)
  words = np.random.RandomState(8).normal(size=(2, 3, 4)).astype(np.float32)
  with tf.Graph().as_default():
    output = modeling.embedding_postprocessor(
        tf.constant(words), use_token_type=True, token_type_ids=tf.constant(token_type_ids),
        token_type_vocab_size=2, max_position_embeddings=5, dropout_prob=0.0)
    names = [v.op.name for v in tf.trainable_variables()]
    tables = [v for v in tf.trainable_variables() if v.op.name.endswith("_embeddings")]
    output, token_types, positions = evaluate([output] + tables)
  assert names == ["token_type_embeddings", "position_embeddings", "LayerNorm/beta",
                   "LayerNorm/gamma"]
  summed = words + token_types[token_type_ids] + positions[:3]
  normalized = (summed - summed.mean(-1, keepdims=True)) / np.sqrt(
      summed.var(-1, keepdims=True) + 1e-12)
  np.testing.assert_allclose(output, normalized, rtol=1e-4, atol=1e-5)
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="`token_type_ids` must be given"):
      modeling.embedding_postprocessor(tf.constant(words), use_token_type=True)


def test_create_attention_mask_from_input_mask():
  to_mask = np.array([[1, 1, 0], [1, 0, 0]], np.int32)
  with tf.Graph().as_default():
    mask = modeling.create_attention_mask_from_input_mask(tf.zeros([2, 4], tf.int32),
                                                          tf.constant(to_mask))
    assert mask.dtype == tf.float32 and mask.shape.as_list() == [2, 4, 3]
    mask = evaluate(mask)
  np.testing.assert_array_equal(mask, np.repeat(to_mask[:, None, :], 4, axis=1))


def test_attention_layer_matches_numpy_and_its_2d_form():
  rng = np.random.RandomState(9)
  from_values = rng.normal(size=(2, 3, 6)).astype(np.float32)
  to_values = rng.normal(size=(2, 5, 6)).astype(np.float32)
  mask = np.ones((2, 3, 5), np.float32)
  mask[1, :, 3:] = 0.0
  with tf.Graph().as_default():
    with tf.variable_scope("attention"):
      context = modeling.attention_layer(
          tf.constant(from_values), tf.constant(to_values), tf.constant(mask),
          num_attention_heads=2, size_per_head=4, initializer_range=0.5)
    with tf.variable_scope("attention", reuse=True):
      context_2d = modeling.attention_layer(
          tf.constant(from_values.reshape(6, 6)), tf.constant(to_values.reshape(10, 6)),
          tf.constant(mask), num_attention_heads=2, size_per_head=4, do_return_2d_tensor=True,
          batch_size=2, from_seq_length=3, to_seq_length=5)
      with pytest.raises(ValueError, match="needs `batch_size`"):
        modeling.attention_layer(tf.zeros([6, 6]), tf.zeros([10, 6]), num_attention_heads=2,
                                 size_per_head=4)
      with pytest.raises(ValueError, match=r"rank of `from_tensor` \(3\) must match"):
        modeling.attention_layer(tf.zeros([2, 3, 6]), tf.zeros([10, 6]))
    assert [v.op.name for v in tf.trainable_variables()] == [
        "attention/%s/%s" % (layer, kind)
        for layer in ("query", "key", "value") for kind in ("kernel", "bias")]
    assert context.shape.as_list() == [2, 3, 8] and context_2d.shape.as_list() == [6, 8]
    context, context_2d, weights = evaluate([context, context_2d, tf.trainable_variables()])

  wq, bq, wk, bk, wv, bv = weights
  heads = lambda x: x.reshape(x.shape[0], x.shape[1], 2, 4).transpose(0, 2, 1, 3)
  q, k, v = heads(from_values @ wq + bq), heads(to_values @ wk + bk), heads(to_values @ wv + bv)
  scores = q @ k.transpose(0, 1, 3, 2) / 2.0 + (1.0 - mask[:, None]) * -10000.0
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected = (probs @ v).transpose(0, 2, 1, 3).reshape(2, 3, 8)
  np.testing.assert_allclose(context, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(context_2d, expected.reshape(6, 8), rtol=1e-6, atol=1e-6)


def test_shape_helpers():
  with tf.Graph().as_default():
    tensor = tf.placeholder(tf.float32, [None, 3, None])
    shape = modeling.get_shape_list(tensor, expected_rank=3)
    assert shape[1] == 3 and all(isinstance(dim, tf.Tensor) for dim in (shape[0], shape[2]))
    static = tf.zeros([2, 3, 4])
    assert modeling.get_shape_list(static) == [2, 3, 4]

    matrix = modeling.reshape_to_matrix(static)
    assert matrix.shape.as_list() == [6, 4]
    assert modeling.reshape_to_matrix(matrix) is matrix
    assert modeling.reshape_from_matrix(matrix, [2, 3, 4]).shape.as_list() == [2, 3, 4]
    assert modeling.reshape_from_matrix(matrix, [6, 4]) is matrix
    with pytest.raises(ValueError, match="at least rank 2"):
      modeling.reshape_to_matrix(tf.zeros([4]))

    dynamic_matrix = modeling.reshape_to_matrix(tensor)
    restored = modeling.reshape_from_matrix(dynamic_matrix, shape)
    values = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    flat, back = evaluate([dynamic_matrix, restored], {tensor: values})
  np.testing.assert_array_equal(flat, values.reshape(6, 5))
  np.testing.assert_array_equal(back, values)
