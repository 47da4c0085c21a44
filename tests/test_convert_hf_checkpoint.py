"""Tests of convert_hf_checkpoint.py on the real MiniLM model and on tiny synthetic ones."""

import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
import safetensors.numpy
import tensorflow.compat.v1 as tf

import convert_hf_checkpoint as convert
import modeling
import script_io
import support

MODEL_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "hidden_act", "hidden_dropout_prob",
                "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                "initializer_range", "layer_norm_eps", "model_type")

SENTENCES = ("the cat sat on the mat .", "jim henson was a famous actor")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
  """The real model converted HF -> original -> HF; returns the three folders."""
  root = tmp_path_factory.mktemp("minilm")
  hf_dir = support.real_model_dir()
  original_dir = str(root / "original")
  back_dir = str(root / "back")
  convert.hf_to_original(hf_dir, original_dir)
  convert.original_to_hf(original_dir, back_dir)
  return hf_dir, original_dir, back_dir


def _read_json(path):
  with open(path) as reader:
    return json.load(reader)


@pytest.mark.slow
def test_round_trip_is_bitwise_exact(minilm):
  hf_dir, _, back_dir = minilm
  before = safetensors.numpy.load_file(os.path.join(hf_dir, "model.safetensors"))
  after = safetensors.numpy.load_file(os.path.join(back_dir, "model.safetensors"))
  # position_ids is a constant buffer (0, 1, 2, ...), not a weight.
  assert sorted(after) == sorted(k for k in before if not k.endswith("position_ids"))
  for name, value in after.items():
    assert value.dtype == before[name].dtype and value.shape == before[name].shape, name
    assert value.tobytes() == before[name].tobytes(), name
  config_before = _read_json(os.path.join(hf_dir, "config.json"))
  config_after = _read_json(os.path.join(back_dir, "config.json"))
  assert {f: config_after[f] for f in MODEL_FIELDS} == {f: config_before[f] for f in MODEL_FIELDS}
  assert config_after["architectures"] == ["BertModel"]
  with open(os.path.join(back_dir, "vocab.txt"), "rb") as a, open(
      os.path.join(hf_dir, "vocab.txt"), "rb") as b:
    assert a.read() == b.read()


def test_original_config_uses_exact_gelu(minilm):
  _, original_dir, _ = minilm
  bert_config = _read_json(os.path.join(original_dir, "bert_config.json"))
  assert bert_config["hidden_act"] == "gelu_exact"
  assert (bert_config["num_hidden_layers"], bert_config["hidden_size"]) == (6, 384)
  assert sorted(os.listdir(original_dir)) == [
      "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index",
      "do_lower_case.json", "vocab.txt"]


def test_real_model_casing_is_carried_both_ways(minilm):
  _, original_dir, back_dir = minilm
  assert _read_json(os.path.join(original_dir, "do_lower_case.json")) == {"do_lower_case": True}
  assert _read_json(os.path.join(back_dir, "tokenizer_config.json")) == {
      "do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512,
      "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
      "mask_token": "[MASK]"}


def test_real_tokenizer_json_gives_the_real_vocab_txt(tmp_path):
  """The real model's folder without vocab.txt: its tokenizer.json gives the same file."""
  real_dir = support.real_model_dir()
  hf_dir = tmp_path / "hf"
  hf_dir.mkdir()
  for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
    (hf_dir / name).symlink_to(os.path.join(real_dir, name))
  assert convert.hf_to_original(str(hf_dir), str(tmp_path / "original")) is True
  with open(str(tmp_path / "original" / "vocab.txt"), "rb") as converted, open(
      os.path.join(real_dir, "vocab.txt"), "rb") as real:
    assert converted.read() == real.read()


def _build_bert_model(bert_config_file, input_ids, input_mask, token_type_ids):
  config = modeling.BertConfig.from_json_file(bert_config_file)
  return modeling.BertModel(
      config=config, is_training=False, input_ids=tf.constant(input_ids),
      input_mask=tf.constant(input_mask), token_type_ids=tf.constant(token_type_ids))


def test_checkpoint_holds_exactly_the_variables_of_bert_model(minilm):
  _, original_dir, _ = minilm
  with tf.Graph().as_default():
    ids = np.zeros([1, 4], np.int32)
    _build_bert_model(os.path.join(original_dir, "bert_config.json"), ids, ids + 1, ids)
    model_variables = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()}
  checkpoint_variables = dict(
      tf.train.list_variables(os.path.join(original_dir, "bert_model.ckpt")))
  assert checkpoint_variables == model_variables


def _token_ids(vocab_file, sentences):
  """Whole-word ids of space-separated words (all in the vocabulary), padded with zeros."""
  with open(vocab_file, encoding="utf-8") as reader:
    vocab = {token.rstrip("\n"): i for i, token in enumerate(reader)}
  rows = [["[CLS]"] + s.split() + ["[SEP]"] for s in sentences]
  length = max(len(row) for row in rows) + 2
  input_ids = np.zeros([len(rows), length], np.int32)
  input_mask = np.zeros([len(rows), length], np.int32)
  for i, row in enumerate(rows):
    input_ids[i, :len(row)] = [vocab[token] for token in row]
    input_mask[i, :len(row)] = 1
  token_type_ids = np.zeros_like(input_ids)
  token_type_ids[1, 3:] = 1
  return input_ids, input_mask, token_type_ids


def _numpy_bert(weights, config, input_ids, input_mask, token_type_ids):
  """BERT forward pass in float64 numpy from Hugging Face tensors, with exact (erf) GELU.

  Returns:
    (all layer outputs, each [batch_size, seq_length, hidden_size], pooled [batch_size, hidden]).
  """
  w = {k: v.astype(np.float64) for k, v in weights.items()}
  erf = np.vectorize(math.erf)
  heads = config["num_attention_heads"]

  def layer_norm(x, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-12) * w[name + ".weight"] + w[name + ".bias"]

  def linear(x, name):
    return x @ w[name + ".weight"].T + w[name + ".bias"]

  def split_heads(x):
    batch, length, width = x.shape
    return x.reshape(batch, length, heads, width // heads).transpose(0, 2, 1, 3)

  seq_length = input_ids.shape[1]
  x = (w["embeddings.word_embeddings.weight"][input_ids] +
       w["embeddings.position_embeddings.weight"][:seq_length] +
       w["embeddings.token_type_embeddings.weight"][token_type_ids])
  x = layer_norm(x, "embeddings.LayerNorm")
  score_mask = (1.0 - input_mask[:, None, None, :]) * -10000.0
  layers = []
  for layer in range(config["num_hidden_layers"]):
    p = "encoder.layer.%d." % layer
    q, k, v = (split_heads(linear(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + score_mask
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    x = layer_norm(linear(context, p + "attention.output.dense") + x,
                   p + "attention.output.LayerNorm")
    h = linear(x, p + "intermediate.dense")
    h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    x = layer_norm(linear(h, p + "output.dense") + x, p + "output.LayerNorm")
    layers.append(x)
  pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
  return layers, pooled


@pytest.mark.slow
def test_converted_model_matches_numpy_bert_with_exact_gelu(minilm):
  hf_dir, original_dir, _ = minilm
  weights = safetensors.numpy.load_file(os.path.join(hf_dir, "model.safetensors"))
  config = _read_json(os.path.join(hf_dir, "config.json"))
  inputs = _token_ids(os.path.join(hf_dir, "vocab.txt"), SENTENCES)
  expected_layers, expected_pooled = _numpy_bert(weights, config, *inputs)

  checkpoint = os.path.join(original_dir, "bert_model.ckpt")
  with tf.Graph().as_default():
    model = _build_bert_model(os.path.join(original_dir, "bert_config.json"), *inputs)
    assignment_map, _ = modeling.get_assignment_map_from_checkpoint(
        tf.trainable_variables(), checkpoint)
    tf.train.init_from_checkpoint(checkpoint, assignment_map)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      layers, pooled = session.run(
          [model.get_all_encoder_layers(), model.get_pooled_output()])

  mask = inputs[1].astype(bool)
  assert len(layers) == len(expected_layers) == 6
  for actual, expected in zip(layers, expected_layers):
    np.testing.assert_allclose(actual[mask], expected[mask], atol=1e-4, rtol=0)
  np.testing.assert_allclose(pooled, expected_pooled, atol=1e-4, rtol=0)


# Tiny synthetic models: every tensor name the converter knows, random values, a vocabulary
# with cased words, and the tokenizer files of transformers.
TINY_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
               ".", "hello", "Hello", "world", "World", "##s", "##ing", "jim", "Jim", "henson"] +
              ["w%d" % i for i in range(20)])
BFLOAT16 = tf.bfloat16.as_numpy_dtype
TINY_CONFIG = {"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 2,
               "num_attention_heads": 2, "intermediate_size": 12, "hidden_act": "gelu",
               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": 16, "type_vocab_size": 2,
               "initializer_range": 0.02, "layer_norm_eps": 1e-12, "model_type": "bert"}


def _tiny_hf_tensors(prefix="", heads=(), dtype=np.float32):
  """HF-layout tensors of TINY_CONFIG in `dtype`; heads among "pretraining", "classifier", "qa"."""
  rng = np.random.RandomState(0)
  v, h, i, p = 40, 8, 12, 16
  shapes = {"embeddings.word_embeddings.weight": [v, h],
            "embeddings.position_embeddings.weight": [p, h],
            "embeddings.token_type_embeddings.weight": [2, h],
            "embeddings.LayerNorm.weight": [h], "embeddings.LayerNorm.bias": [h],
            "pooler.dense.weight": [h, h], "pooler.dense.bias": [h]}
  for layer in range(2):
    for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense"):
      shapes["encoder.layer.%d.%s.weight" % (layer, name)] = [h, h]
      shapes["encoder.layer.%d.%s.bias" % (layer, name)] = [h]
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes["encoder.layer.%d.%s.weight" % (layer, name)] = [h]
      shapes["encoder.layer.%d.%s.bias" % (layer, name)] = [h]
    shapes["encoder.layer.%d.intermediate.dense.weight" % layer] = [i, h]
    shapes["encoder.layer.%d.intermediate.dense.bias" % layer] = [i]
    shapes["encoder.layer.%d.output.dense.weight" % layer] = [h, i]
    shapes["encoder.layer.%d.output.dense.bias" % layer] = [h]
  tensors = {prefix + name: rng.randn(*shape).astype(np.float32)
             for name, shape in shapes.items()}
  tensors[prefix + "embeddings.position_ids"] = np.arange(p, dtype=np.int64)[None]
  if "pretraining" in heads:
    tensors["cls.predictions.transform.dense.weight"] = rng.randn(h, h).astype(np.float32)
    tensors["cls.predictions.transform.dense.bias"] = rng.randn(h).astype(np.float32)
    tensors["cls.predictions.transform.LayerNorm.weight"] = rng.randn(h).astype(np.float32)
    tensors["cls.predictions.transform.LayerNorm.bias"] = rng.randn(h).astype(np.float32)
    tensors["cls.predictions.bias"] = rng.randn(v).astype(np.float32)
    tensors["cls.predictions.decoder.weight"] = (
        tensors[prefix + "embeddings.word_embeddings.weight"])
    tensors["cls.seq_relationship.weight"] = rng.randn(2, h).astype(np.float32)
    tensors["cls.seq_relationship.bias"] = rng.randn(2).astype(np.float32)
  if "classifier" in heads:
    tensors["classifier.weight"] = rng.randn(3, h).astype(np.float32)
    tensors["classifier.bias"] = rng.randn(3).astype(np.float32)
  if "qa" in heads:
    tensors["qa_outputs.weight"] = rng.randn(2, h).astype(np.float32)
    tensors["qa_outputs.bias"] = rng.randn(2).astype(np.float32)
  return {name: value.astype(dtype) if value.dtype == np.float32 else value
          for name, value in tensors.items()}


def _tokenizer_json(do_lower_case):
  """A tokenizer.json of TINY_VOCAB as transformers writes it, its vocabulary shuffled."""
  ids = list(enumerate(TINY_VOCAB))
  np.random.RandomState(1).shuffle(ids)
  return {
      "version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [{"id": TINY_VOCAB.index(token), "content": token, "special": True}
                       for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")],
      "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                     "strip_accents": None, "lowercase": do_lower_case},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {token: token_id for token_id, token in ids}}}


def _tokenizer_config(do_lower_case):
  """A tokenizer_config.json as transformers writes it."""
  return {"do_lower_case": do_lower_case, "tokenizer_class": "BertTokenizer",
          "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
          "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
          "tokenize_chinese_chars": True, "strip_accents": None}


def _write_hf_dir(directory, tensors, config=None, tokenizer_files=("vocab.txt",),
                  do_lower_case=True):
  """Writes a Hugging Face folder; tokenizer_files among vocab.txt, tokenizer.json and
  tokenizer_config.json, the last two saying `do_lower_case`."""
  os.makedirs(directory)
  safetensors.numpy.save_file(tensors, os.path.join(directory, "model.safetensors"),
                              metadata={"format": "pt"})
  with open(os.path.join(directory, "config.json"), "w") as writer:
    json.dump(TINY_CONFIG if config is None else config, writer)
  contents = {"vocab.txt": lambda: "".join(token + "\n" for token in TINY_VOCAB),
              "tokenizer.json": lambda: json.dumps(_tokenizer_json(do_lower_case)),
              "tokenizer_config.json": lambda: json.dumps(_tokenizer_config(do_lower_case))}
  for name in tokenizer_files:
    with open(os.path.join(directory, name), "w") as writer:
      writer.write(contents[name]())
  return directory


def _checkpoint_tensors(path):
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_pretraining_heads_map_to_original_names(tmp_path):
  tensors = _tiny_hf_tensors(prefix="bert.", heads=("pretraining",))
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  original = _checkpoint_tensors(str(tmp_path / "original" / "bert_model.ckpt"))

  np.testing.assert_array_equal(original["bert/encoder/layer_1/attention/self/query/kernel"],
                                tensors["bert.encoder.layer.1.attention.self.query.weight"].T)
  np.testing.assert_array_equal(original["bert/encoder/layer_0/intermediate/dense/kernel"],
                                tensors["bert.encoder.layer.0.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(original["bert/embeddings/LayerNorm/gamma"],
                                tensors["bert.embeddings.LayerNorm.weight"])
  np.testing.assert_array_equal(original["cls/predictions/transform/dense/kernel"],
                                tensors["cls.predictions.transform.dense.weight"].T)
  np.testing.assert_array_equal(original["cls/predictions/output_bias"],
                                tensors["cls.predictions.bias"])
  # The NSP weights are [2, hidden] in both layouts (the original multiplies with transpose_b).
  np.testing.assert_array_equal(original["cls/seq_relationship/output_weights"],
                                tensors["cls.seq_relationship.weight"])
  assert len(original) == len(tensors) - 2  # position_ids and the tied decoder weight

  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  back = safetensors.numpy.load_file(str(tmp_path / "back" / "model.safetensors"))
  expected = {k: v for k, v in tensors.items()
              if k not in ("bert.embeddings.position_ids", "cls.predictions.decoder.weight")}
  assert sorted(back) == sorted(expected)
  for name, value in back.items():
    np.testing.assert_array_equal(value, expected[name])
  assert _read_json(str(tmp_path / "back" / "config.json"))["architectures"] == [
      "BertForPreTraining"]


def test_untied_decoder_is_rejected(tmp_path):
  tensors = _tiny_hf_tensors(heads=("pretraining",))
  tensors["cls.predictions.decoder.weight"] = tensors["cls.predictions.decoder.weight"] + 1
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  with pytest.raises(script_io.InputError, match="cls.predictions.decoder.weight"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  assert not os.path.exists(str(tmp_path / "original"))


def test_question_answering_head_round_trips(tmp_path):
  tensors = _tiny_hf_tensors(prefix="bert.", heads=("qa",))
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  original = _checkpoint_tensors(str(tmp_path / "original" / "bert_model.ckpt"))
  np.testing.assert_array_equal(original["cls/squad/output_weights"], tensors["qa_outputs.weight"])
  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  back = safetensors.numpy.load_file(str(tmp_path / "back" / "model.safetensors"))
  np.testing.assert_array_equal(back["qa_outputs.bias"], tensors["qa_outputs.bias"])
  assert _read_json(str(tmp_path / "back" / "config.json"))["architectures"] == [
      "BertForQuestionAnswering"]


def test_token_classification_head_round_trips_under_run_ner_names(tmp_path):
  tensors = _tiny_hf_tensors(prefix="bert.", heads=("classifier",))
  del tensors["bert.pooler.dense.weight"], tensors["bert.pooler.dense.bias"]  # HF has none
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors,
                         dict(TINY_CONFIG, architectures=["BertForTokenClassification"]))
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  original = _checkpoint_tensors(str(tmp_path / "original" / "bert_model.ckpt"))
  np.testing.assert_array_equal(original["cls/ner/output_weights"], tensors["classifier.weight"])
  np.testing.assert_array_equal(original["cls/ner/output_bias"], tensors["classifier.bias"])
  assert "output_weights" not in original

  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  back = safetensors.numpy.load_file(str(tmp_path / "back" / "model.safetensors"))
  assert sorted(back) == sorted(name for name in tensors if not name.endswith("position_ids"))
  for name, value in back.items():
    assert value.tobytes() == tensors[name].tobytes(), name
  hf_config = _read_json(str(tmp_path / "back" / "config.json"))
  assert hf_config["architectures"] == ["BertForTokenClassification"]
  assert hf_config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}


def _write_training_checkpoint(tensors, directory, step):
  """Saves `tensors` as a training run would: with global_step and Adam slots, plus state file."""
  with tf.Graph().as_default():
    for name, value in tensors.items():
      tf.Variable(value, name=name)
      tf.Variable(np.zeros_like(value), name=name + "/adam_m")
      tf.Variable(np.zeros_like(value), name=name + "/adam_v")
    tf.train.get_or_create_global_step()
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver().save(session, os.path.join(directory, "model.ckpt"), global_step=step)


@pytest.mark.slow
def test_finetuned_classifier_output_dir_converts_to_hf(tmp_path):
  """A fine-tuning output_dir (latest checkpoint, Adam slots) becomes a HF classifier."""
  finetuned = _checkpoint_tensors(support.fixture_path("classifier", "finetuned.ckpt"))
  run_dir = str(tmp_path / "run")
  os.makedirs(run_dir)
  _write_training_checkpoint(finetuned, run_dir, step=7)
  shutil.copy(support.fixture_path("modeling", "bert_config.json"), run_dir)
  shutil.copy(support.VOCAB_FILE, os.path.join(run_dir, "vocab.txt"))

  convert.original_to_hf(run_dir, str(tmp_path / "hf"))
  hf = safetensors.numpy.load_file(str(tmp_path / "hf" / "model.safetensors"))
  assert len(hf) == len(finetuned)
  np.testing.assert_array_equal(hf["classifier.weight"], finetuned["output_weights"])
  np.testing.assert_array_equal(hf["bert.encoder.layer.1.output.dense.weight"],
                                finetuned["bert/encoder/layer_1/output/dense/kernel"].T)
  hf_config = _read_json(str(tmp_path / "hf" / "config.json"))
  assert hf_config["architectures"] == ["BertForSequenceClassification"]
  assert hf_config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}
  assert hf_config["hidden_act"] == "gelu_new"  # the original's tanh approximation

  convert.hf_to_original(str(tmp_path / "hf"), str(tmp_path / "original"))
  again = _checkpoint_tensors(str(tmp_path / "original" / "bert_model.ckpt"))
  assert sorted(again) == sorted(finetuned)
  for name, value in again.items():
    assert value.tobytes() == finetuned[name].tobytes(), name
  assert _read_json(str(tmp_path / "original" / "bert_config.json")) == _read_json(
      support.fixture_path("modeling", "bert_config.json"))


@pytest.mark.parametrize("hf_act, original_act, back_act", [
    ("gelu", "gelu_exact", "gelu"),
    ("gelu_new", "gelu", "gelu_new"),
    ("gelu_pytorch_tanh", "gelu", "gelu_new"),
    ("relu", "relu", "relu"),
    ("tanh", "tanh", "tanh"),
])
def test_activation_names(hf_act, original_act, back_act):
  bert_config = convert.hf_config_to_bert_config(dict(TINY_CONFIG, hidden_act=hf_act))
  assert bert_config["hidden_act"] == original_act
  modeling.get_activation(bert_config["hidden_act"])
  assert convert.bert_config_to_hf_config(bert_config, "BertModel")["hidden_act"] == back_act


def test_missing_hf_config_fields_take_hugging_face_defaults():
  config = {k: v for k, v in TINY_CONFIG.items() if k != "type_vocab_size"}
  assert convert.hf_config_to_bert_config(config)["type_vocab_size"] == 2


@pytest.mark.parametrize("change, message", [
    ({"layer_norm_eps": 1e-5}, "layer_norm_eps=1e-05 is not supported"),
    ({"hidden_act": "silu"}, "hidden_act 'silu' is not supported"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
])
def test_unsupported_hf_config_is_rejected(tmp_path, change, message):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), dict(TINY_CONFIG, **change))
  with pytest.raises(script_io.InputError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_unknown_tensor_is_rejected(tmp_path):
  tensors = _tiny_hf_tensors()
  tensors["encoder.layer.2.output.dense.bias"] = np.zeros(8, np.float32)
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  with pytest.raises(script_io.InputError,
                     match=r"unknown tensor 'encoder.layer.2.output.dense.bias' .*"
                     r"num_hidden_layers=2"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_shape_contradicting_config_is_rejected(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(),
                         dict(TINY_CONFIG, vocab_size=41))
  with pytest.raises(script_io.InputError,
                     match=r"embeddings.word_embeddings.weight has shape \[40, 8\] but .*"
                     r"config.json implies \[41, 8\]"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_config_bert_model_cannot_use_is_rejected(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(),
                         dict(TINY_CONFIG, num_attention_heads=3))
  with pytest.raises(script_io.InputError, match="not a multiple of num_attention_heads"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_missing_encoder_tensor_is_rejected(tmp_path):
  tensors = _tiny_hf_tensors()
  del tensors["encoder.layer.1.output.LayerNorm.bias"]
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  with pytest.raises(script_io.InputError, match="lacks 1 encoder tensors"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_activation_without_hugging_face_name_is_rejected(tmp_path):
  original_dir = str(tmp_path / "original")
  convert.hf_to_original(_write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors()), original_dir)
  config_file = os.path.join(original_dir, "bert_config.json")
  with open(config_file, "w") as writer:
    json.dump(dict(_read_json(support.fixture_path("modeling", "bert_config.json")),
                   vocab_size=40, hidden_size=8, intermediate_size=12,
                   max_position_embeddings=16, hidden_act="linear"), writer)
  with pytest.raises(script_io.InputError, match="'linear' has no Hugging Face equivalent"):
    convert.original_to_hf(original_dir, str(tmp_path / "back"))


def test_unknown_original_variable_is_rejected(tmp_path):
  original_dir = str(tmp_path / "original")
  convert.hf_to_original(_write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors()), original_dir)
  tensors = _checkpoint_tensors(os.path.join(original_dir, "bert_model.ckpt"))
  tensors["my_head/kernel"] = np.zeros([8, 3], np.float32)
  run_dir = str(tmp_path / "run")
  shutil.copytree(original_dir, run_dir, ignore=shutil.ignore_patterns("bert_model.ckpt*"))
  _write_training_checkpoint(tensors, run_dir, step=1)
  with pytest.raises(script_io.InputError, match="unknown variable 'my_head/kernel'"):
    convert.original_to_hf(run_dir, str(tmp_path / "back"))


@pytest.mark.parametrize("missing, message", [
    ("model.safetensors", "no model.safetensors in "),
    ("config.json", "no config.json in "),
    ("vocab.txt", "no vocab.txt and no tokenizer.json in "),
])
def test_missing_input_file_is_rejected(tmp_path, missing, message):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  os.remove(os.path.join(hf_dir, missing))
  with pytest.raises(script_io.InputError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_missing_checkpoint_is_rejected(tmp_path):
  original_dir = str(tmp_path / "original")
  convert.hf_to_original(_write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors()), original_dir)
  for name in os.listdir(original_dir):
    if name.startswith("bert_model.ckpt"):
      os.remove(os.path.join(original_dir, name))
  with pytest.raises(script_io.InputError, match="no bert_model.ckpt.index and no training"):
    convert.original_to_hf(original_dir, str(tmp_path / "back"))


def test_non_empty_output_dir_is_left_alone(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  output_dir = tmp_path / "original"
  output_dir.mkdir()
  (output_dir / "notes.txt").write_text("mine")
  with pytest.raises(script_io.InputError, match="exists and is not empty"):
    convert.hf_to_original(hf_dir, str(output_dir))
  assert os.listdir(str(output_dir)) == ["notes.txt"]


def test_empty_output_dir_is_used(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  (tmp_path / "original").mkdir()
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  assert "bert_model.ckpt.index" in os.listdir(str(tmp_path / "original"))
  assert not support.temporary_outputs(str(tmp_path))


def test_missing_safetensors_package_is_explained(tmp_path, monkeypatch):
  """Reading the Hugging Face layout needs only numpy; writing it needs safetensors."""
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  monkeypatch.setitem(sys.modules, "safetensors", None)
  monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  with pytest.raises(script_io.InputError, match="pip install safetensors"):
    convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))


# ------------------------------------------------------------------------------------------------
# Folders as transformers 5 saves them: tokenizer.json without vocab.txt, half-precision weights,
# the casing in tokenizer_config.json.


def _tokenizer_only_hf_dir(directory, tensors, do_lower_case=True):
  return _write_hf_dir(directory, tensors, do_lower_case=do_lower_case,
                       tokenizer_files=("tokenizer.json", "tokenizer_config.json"))


def _rewrite_json(path, change):
  """Applies `change` to the JSON object in `path`."""
  value = _read_json(path)
  change(value)
  with open(path, "w") as writer:
    json.dump(value, writer)


def test_vocabulary_comes_from_tokenizer_json_in_id_order(tmp_path):
  tensors = _tiny_hf_tensors(prefix="bert.", heads=("classifier",))
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), tensors)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  expected_vocab = "".join(token + "\n" for token in TINY_VOCAB).encode("utf-8")
  with open(str(tmp_path / "original" / "vocab.txt"), "rb") as reader:
    assert reader.read() == expected_vocab

  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  with open(str(tmp_path / "back" / "vocab.txt"), "rb") as reader:
    assert reader.read() == expected_vocab
  back = safetensors.numpy.load_file(str(tmp_path / "back" / "model.safetensors"))
  assert sorted(back) == sorted(k for k in tensors if not k.endswith("position_ids"))
  for name, value in back.items():
    assert value.tobytes() == tensors[name].tobytes(), name


def test_vocab_txt_and_tokenizer_json_that_agree(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(),
                         tokenizer_files=("vocab.txt", "tokenizer.json"))
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  assert _read_json(str(tmp_path / "original" / "do_lower_case.json")) == {
      "do_lower_case": True}


@pytest.mark.parametrize("vocab, message", [
    (TINY_VOCAB[:5] + [TINY_VOCAB[6], TINY_VOCAB[5]] + TINY_VOCAB[7:],
     r"vocab.txt and .*tokenizer.json disagree: id 5 is 'cat' in the first, 'the' in the second"),
    (TINY_VOCAB + ["extra"], r"vocab.txt and .*tokenizer.json disagree: 41 tokens against 40"),
])
def test_vocab_txt_and_tokenizer_json_that_disagree(tmp_path, vocab, message):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(),
                         tokenizer_files=("tokenizer.json",))
  with open(os.path.join(hf_dir, "vocab.txt"), "w") as writer:
    writer.write("".join(token + "\n" for token in vocab))
  with pytest.raises(script_io.InputError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def _set_vocab_id(token, token_id):
  return lambda tokenizer: tokenizer["model"]["vocab"].update({token: token_id})


@pytest.mark.parametrize("change, message", [
    (_set_vocab_id("[UNK]", 40), r"token '\[UNK\]' has id 40, but the ids of 40 tokens must be "
     r"0 to 39"),
    (_set_vocab_id("cat", 5), r"tokens '(the|cat)' and '(the|cat)' both have id 5"),
    (lambda tokenizer: tokenizer["model"].update(type="BPE"),
     r"the tokenizer model is 'BPE'; BERT needs a WordPiece vocabulary"),
    (lambda tokenizer: tokenizer["model"].update(continuing_subword_prefix="@@"),
     r"continuing_subword_prefix is '@@'; the original tokenizer marks continuing pieces with "
     r"'##'"),
    (lambda tokenizer: tokenizer["normalizer"].update(lowercase="yes"),
     r"tokenizer.json: normalizer.lowercase must be true or false, got 'yes'"),
], ids=["id_gap", "duplicate_id", "bpe_model", "piece_prefix", "lowercase_not_bool"])
def test_unusable_tokenizer_json_is_rejected(tmp_path, change, message):
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  _rewrite_json(os.path.join(hf_dir, "tokenizer.json"), change)
  with pytest.raises(script_io.InputError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  assert not os.path.exists(str(tmp_path / "original"))


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=["float16", "bfloat16"])
def test_half_precision_weights_widen_to_float32_exactly(tmp_path, dtype):
  tensors = _tiny_hf_tensors(prefix="bert.", heads=("pretraining",), dtype=dtype)
  # Zeros of both signs, infinities, a NaN, float16's smallest subnormal and bfloat16's.
  tensors["bert.embeddings.LayerNorm.bias"] = np.array(
      [0.0, -0.0, np.inf, -np.inf, np.nan, 2.0 ** -24, 2.0 ** -133, -65504.0],
      np.float32).astype(dtype)
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), tensors)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  original = _checkpoint_tensors(str(tmp_path / "original" / "bert_model.ckpt"))
  widened = {name: value.astype(np.float32) for name, value in tensors.items()}
  assert (original["bert/embeddings/LayerNorm/beta"].tobytes() ==
          widened["bert.embeddings.LayerNorm.bias"].tobytes())
  assert (original["bert/encoder/layer_1/intermediate/dense/kernel"].tobytes() ==
          widened["bert.encoder.layer.1.intermediate.dense.weight"].T.tobytes())

  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  back = safetensors.numpy.load_file(str(tmp_path / "back" / "model.safetensors"))
  assert sorted(back) == sorted(
      k for k in tensors if k not in ("bert.embeddings.position_ids",
                                      "cls.predictions.decoder.weight"))
  for name, value in back.items():
    assert value.dtype == np.float32 and value.tobytes() == widened[name].tobytes(), name
    # Narrowing the float32 back gives the stored bits: nothing was lost on the way.
    assert value.astype(dtype).tobytes() == tensors[name].tobytes(), name


def test_other_weight_dtypes_are_rejected(tmp_path):
  tensors = _tiny_hf_tensors()
  tensors["encoder.layer.0.output.dense.bias"] = np.zeros(8, np.float64)
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), tensors)
  with pytest.raises(script_io.InputError,
                     match=r"model.safetensors: tensor 'encoder.layer.0.output.dense.bias' is "
                     r"F64; only F32, F16 and BF16 weights can be converted"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


@pytest.mark.parametrize("keep, message", [
    (4, r"model.safetensors is not a safetensors file: it has 4 bytes"),
    (-4, r"model.safetensors: the header entry of '.*' is malformed"),
])
def test_truncated_safetensors_file_is_rejected(tmp_path, keep, message):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  weights_file = os.path.join(hf_dir, "model.safetensors")
  with open(weights_file, "rb") as reader:
    contents = reader.read()
  with open(weights_file, "wb") as writer:
    writer.write(contents[:keep])
  with pytest.raises(script_io.InputError, match=message):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"))


def test_cased_model_keeps_its_casing_both_ways(tmp_path):
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=False)
  original_dir = str(tmp_path / "original")
  assert convert.hf_to_original(hf_dir, original_dir) is False
  assert _read_json(os.path.join(original_dir, "do_lower_case.json")) == {"do_lower_case": False}

  assert convert.original_to_hf(original_dir, str(tmp_path / "back")) is False
  assert _read_json(str(tmp_path / "back" / "tokenizer_config.json")) == {
      "do_lower_case": False, "tokenizer_class": "BertTokenizer", "model_max_length": 16,
      "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
      "mask_token": "[MASK]"}
  # The folder written by original_to_hf (vocab.txt and our tokenizer_config.json) converts too.
  assert convert.hf_to_original(str(tmp_path / "back"), str(tmp_path / "again")) is False


@pytest.mark.parametrize("init_checkpoint", ["bert_model.ckpt", ""], ids=["prefix", "folder"])
def test_scripts_check_do_lower_case_against_the_recorded_casing(tmp_path, init_checkpoint):
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=False)
  original_dir = str(tmp_path / "original")
  convert.hf_to_original(hf_dir, original_dir)
  vocab_file = os.path.join(original_dir, "vocab.txt")
  init_checkpoint = os.path.join(original_dir, init_checkpoint)
  tokenizer = script_io.load_tokenizer(vocab_file, False, init_checkpoint)
  assert tokenizer.tokenize("Hello world") == ["Hello", "world"]
  with pytest.raises(script_io.InputError) as error:
    script_io.load_tokenizer(vocab_file, True, init_checkpoint)
  assert str(error.value) == (
      "`--do_lower_case=True` does not fit `--init_checkpoint=%s`: %s says the model was trained "
      "with do_lower_case=False, so pass `--do_lower_case=False`" %
      (init_checkpoint, os.path.join(original_dir, "do_lower_case.json")))


@pytest.mark.parametrize("text", ['{"do_lower_case": "false"}', "[]", "no json"])
def test_malformed_casing_record_is_rejected(tmp_path, text):
  (tmp_path / "do_lower_case.json").write_text(text)
  with pytest.raises(script_io.InputError,
                     match=r'do_lower_case.json must hold \{"do_lower_case": true\} or'):
    script_io.load_tokenizer(support.VOCAB_FILE, True, str(tmp_path / "bert_model.ckpt"))


def test_casing_from_the_normalizer_of_tokenizer_json(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=False,
                         tokenizer_files=("tokenizer.json",))
  assert convert.hf_to_original(hf_dir, str(tmp_path / "original")) is False
  assert _read_json(str(tmp_path / "original" / "do_lower_case.json")) == {
      "do_lower_case": False}


def test_tokenizer_config_json_decides_over_the_normalizer(tmp_path):
  """As in transformers 5.24, whose BertTokenizer then keeps the case; the flag can choose."""
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=True)
  _rewrite_json(os.path.join(hf_dir, "tokenizer_config.json"),
                lambda config: config.update(do_lower_case=False))
  assert convert.hf_to_original(hf_dir, str(tmp_path / "original")) is False
  assert _read_json(str(tmp_path / "original" / "do_lower_case.json")) == {
      "do_lower_case": False}
  assert convert.hf_to_original(hf_dir, str(tmp_path / "chosen"), do_lower_case=True) is True
  assert _read_json(str(tmp_path / "chosen" / "do_lower_case.json")) == {"do_lower_case": True}


def test_flag_contradicting_the_tokenizer_files_is_rejected(tmp_path):
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=False)
  with pytest.raises(script_io.InputError,
                     match=r"--do_lower_case=True contradicts .*tokenizer_config.json, which says "
                     r"do_lower_case=False"):
    convert.hf_to_original(hf_dir, str(tmp_path / "original"), do_lower_case=True)


def test_folder_without_casing_records_none_unless_told(tmp_path):
  """vocab.txt alone: transformers lower-cases, so the scripts should; nothing is recorded."""
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  assert convert.hf_to_original(hf_dir, str(tmp_path / "default")) is True
  assert not os.path.exists(str(tmp_path / "default" / "do_lower_case.json"))
  assert convert.hf_to_original(hf_dir, str(tmp_path / "told"), do_lower_case=False) is False
  assert _read_json(str(tmp_path / "told" / "do_lower_case.json")) == {"do_lower_case": False}


def test_casing_of_original_folders_without_a_record(tmp_path):
  """A Google model name tells the casing; elsewhere it is the flag, else the scripts' default."""
  google_dir = str(tmp_path / "cased_L-12_H-768_A-12")
  convert.hf_to_original(_write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors()), google_dir)
  assert convert.original_to_hf(google_dir, str(tmp_path / "google_hf")) is False
  assert _read_json(str(tmp_path / "google_hf" / "tokenizer_config.json"))["do_lower_case"] is False
  with pytest.raises(script_io.InputError,
                     match=r"--do_lower_case=True contradicts the Google model name in .*"
                     r"cased_L-12_H-768_A-12/bert_model.ckpt, which says do_lower_case=False"):
    convert.original_to_hf(google_dir, str(tmp_path / "wrong"), do_lower_case=True)

  own_dir = str(tmp_path / "my_model")
  shutil.copytree(google_dir, own_dir)
  assert convert.original_to_hf(own_dir, str(tmp_path / "default_hf")) is True
  assert convert.original_to_hf(own_dir, str(tmp_path / "told_hf"), do_lower_case=False) is False
  assert _read_json(str(tmp_path / "told_hf" / "tokenizer_config.json"))["do_lower_case"] is False


@pytest.mark.parametrize("do_lower_case", [True, False], ids=["uncased", "cased"])
def test_transformers_reads_the_written_casing(tmp_path, do_lower_case):
  transformers = pytest.importorskip(
      "transformers", reason="transformers is not installed (optional; tokenizer_config.json "
      "is checked field by field above)")
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(),
                                  do_lower_case=do_lower_case)
  convert.hf_to_original(hf_dir, str(tmp_path / "original"))
  convert.original_to_hf(str(tmp_path / "original"), str(tmp_path / "back"))
  expected = ["hello", "world"] if do_lower_case else ["Hello", "World"]
  for tokenizer_class in (transformers.AutoTokenizer, transformers.BertTokenizer):
    tokenizer = tokenizer_class.from_pretrained(str(tmp_path / "back"))
    assert tokenizer.tokenize("Hello World") == expected, tokenizer_class


# ------------------------------------------------------------------------------------------------
# Command line.


def _last_error_line(result):
  """The one ERROR line of a failed run; fails the test on a traceback or another exit code."""
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  lines = result.stderr.strip().splitlines()
  assert [line for line in lines if line.startswith("ERROR: ")] == lines[-1:], result.stderr
  return lines[-1]


@pytest.mark.slow
def test_command_line_converts_a_transformers_5_folder_both_ways(tmp_path):
  """tokenizer.json only, bfloat16 weights, a cased model."""
  tensors = _tiny_hf_tensors(dtype=BFLOAT16)
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), tensors, do_lower_case=False)
  original_dir = str(tmp_path / "original")
  result = support.run_script("convert_hf_checkpoint", [
      "--direction=hf_to_original", "--input_dir=" + hf_dir, "--output_dir=" + original_dir])
  assert result.returncode == 0, result.stderr
  assert result.stdout == "Run the scripts on %s with --do_lower_case=False\n" % original_dir

  back_dir = str(tmp_path / "back")
  result = support.run_script("convert_hf_checkpoint", [
      "--direction=original_to_hf", "--input_dir=" + original_dir, "--output_dir=" + back_dir])
  assert result.returncode == 0, result.stderr
  assert result.stdout == "%s says do_lower_case=False\n" % os.path.join(
      back_dir, "tokenizer_config.json")
  back = safetensors.numpy.load_file(os.path.join(back_dir, "model.safetensors"))
  for name, value in back.items():
    assert value.astype(BFLOAT16).tobytes() == tensors[name].tobytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("make_bad, message", [
    (lambda hf_dir: _write_hf_dir(hf_dir, dict(_tiny_hf_tensors(), **{
        "pooler.dense.bias": np.zeros(8, np.int32)})),
     "ERROR: %(hf)s/model.safetensors: tensor 'pooler.dense.bias' is I32; only F32, F16 and "
     "BF16 weights can be converted"),
    (lambda hf_dir: _rewrite_json(
        os.path.join(_tokenizer_only_hf_dir(hf_dir, _tiny_hf_tensors()), "tokenizer.json"),
        _set_vocab_id("[UNK]", 40)),
     "ERROR: %(hf)s/tokenizer.json: token '[UNK]' has id 40, but the ids of 40 tokens must be 0 "
     "to 39"),
    (lambda hf_dir: _rewrite_json(
        os.path.join(_tokenizer_only_hf_dir(hf_dir, _tiny_hf_tensors()), "tokenizer_config.json"),
        lambda config: config.update(do_lower_case="no")),
     "ERROR: %(hf)s/tokenizer_config.json: do_lower_case must be true or false, got 'no'"),
], ids=["int32_weight", "id_gap", "casing_not_bool"])
def test_command_line_bad_input_is_one_line(tmp_path, make_bad, message):
  hf_dir = str(tmp_path / "hf")
  make_bad(hf_dir)
  result = support.run_script("convert_hf_checkpoint", [
      "--direction=hf_to_original", "--input_dir=" + hf_dir,
      "--output_dir=" + str(tmp_path / "original")])
  assert _last_error_line(result) == message % {"hf": hf_dir}
  assert not os.path.exists(str(tmp_path / "original"))


@pytest.mark.slow
def test_scripts_refuse_a_do_lower_case_the_converted_model_contradicts(tmp_path):
  hf_dir = _tokenizer_only_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors(), do_lower_case=False)
  original_dir = str(tmp_path / "original")
  convert.hf_to_original(hf_dir, original_dir)
  (tmp_path / "input.txt").write_text("Hello World\n")
  init_checkpoint = os.path.join(original_dir, "bert_model.ckpt")
  result = support.run_script("extract_features", [
      "--input_file=" + str(tmp_path / "input.txt"),
      "--output_file=" + str(tmp_path / "features.jsonl"),
      "--vocab_file=" + os.path.join(original_dir, "vocab.txt"),
      "--bert_config_file=" + os.path.join(original_dir, "bert_config.json"),
      "--init_checkpoint=" + init_checkpoint, "--do_lower_case=True", "--max_seq_length=8",
      "--layers=-1"])
  assert _last_error_line(result) == (
      "ERROR: `--do_lower_case=True` does not fit `--init_checkpoint=%s`: %s says the model was "
      "trained with do_lower_case=False, so pass `--do_lower_case=False`" %
      (init_checkpoint, os.path.join(original_dir, "do_lower_case.json")))


@pytest.mark.slow
def test_command_line(tmp_path):
  hf_dir = _write_hf_dir(str(tmp_path / "hf"), _tiny_hf_tensors())
  result = support.run_script("convert_hf_checkpoint", [
      "--direction=hf_to_original", "--input_dir=" + hf_dir,
      "--output_dir=" + str(tmp_path / "original")])
  assert result.returncode == 0, result.stderr
  variables = dict(tf.train.list_variables(str(tmp_path / "original" / "bert_model.ckpt")))
  assert len(variables) == len(_tiny_hf_tensors()) - 1  # all but position_ids
  assert variables["bert/encoder/layer_0/intermediate/dense/kernel"] == [8, 12]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--direction=sideways", "--input_dir=.", "--output_dir=x"],
     "ERROR: --direction must be one of hf_to_original, original_to_hf, got 'sideways'"),
    (["--direction=hf_to_original", "--input_dir=/no/such/dir", "--output_dir=x"],
     "ERROR: --input_dir: no such folder: /no/such/dir"),
])
def test_command_line_bad_flags(args, message):
  result = support.run_script("convert_hf_checkpoint", args)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == message
