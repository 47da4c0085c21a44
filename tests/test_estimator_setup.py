"""Tests of what estimator_setup checks before a model is built (the vocabulary and checkpoints
against the config) and while it trains (a NaN loss names its step; a failed start leaves no
checkpoint for the next run to resume from)."""

import model_checks
import os
import shutil

import modeling
import pytest
import script_io
import support
import training_guard
import tensorflow.compat.v1 as tf

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")
MODEL_CHECKPOINT = support.fixture_path("modeling", "bert_model.ckpt")


def fixture_config(**overrides):
  config = modeling.BertConfig.from_json_file(MODEL_CONFIG)
  for name, value in overrides.items():
    setattr(config, name, value)
  return config


def test_vocabulary_smaller_than_the_model_is_fine_and_larger_is_refused():
  vocab = {"[PAD]": 0, "[UNK]": 1, "the": 2}
  model_checks.check_vocab_fits_model(vocab, "vocab.txt", fixture_config(vocab_size=3), "c")
  model_checks.check_vocab_fits_model(vocab, "vocab.txt", fixture_config(vocab_size=9), "c")
  with pytest.raises(script_io.InputError, match=r"^--vocab_file vocab.txt has 3 tokens but "
                     r"--bert_config_file c has vocab_size=2: pass the vocab.txt and "
                     r"bert_config.json of the same model$"):
    model_checks.check_vocab_fits_model(vocab, "vocab.txt", fixture_config(vocab_size=2), "c")


def test_config_no_model_can_be_built_with_is_one_line(tmp_path):
  config_file = support.write_config(tmp_path / "bert_config.json", num_attention_heads=5)
  with pytest.raises(script_io.InputError, match=(
      r"^--bert_config_file: \S+bert_config.json is not a BERT config: BertConfig.hidden_size "
      r"\(64\) is not a multiple of num_attention_heads \(5\)$")):
    model_checks.load_bert_config(config_file, 128)
  # Dropout is left out without training, as in the original.
  config_file = support.write_config(tmp_path / "bert_config.json", hidden_dropout_prob=1.0)
  model_checks.load_bert_config(config_file, 128, is_training=False)
  with pytest.raises(script_io.InputError, match=r"hidden_dropout_prob must be a probability"):
    model_checks.load_bert_config(config_file, 128, is_training=True)


def test_output_dir_checkpoint_of_the_same_model_or_none_is_fine(tmp_path):
  model_checks.check_output_dir_checkpoint(str(tmp_path / "absent"), fixture_config())
  model_checks.check_output_dir_checkpoint(str(tmp_path), fixture_config())
  support.copy_checkpoint(MODEL_CHECKPOINT, str(tmp_path))
  model_checks.check_output_dir_checkpoint(str(tmp_path), fixture_config(), {
      "cls/predictions/output_bias": [30522]})


@pytest.mark.parametrize("overrides, heads, difference", [
    ({"num_hidden_layers": 3}, None,
     "2 encoder layers in the checkpoint but 3 in --bert_config_file"),
    ({"max_position_embeddings": 128}, None,
     "bert/embeddings/position_embeddings is [512, 64] in the checkpoint but [128, 64] in this "
     "run"),
    ({"intermediate_size": 128}, None,
     "bert/encoder/layer_0/intermediate/dense/kernel is [64, 256] in the checkpoint but "
     "[64, 128] in this run"),
    ({}, {"output_weights": [2, 64]}, "it has no variable output_weights"),
])
def test_output_dir_checkpoint_of_another_model(tmp_path, overrides, heads, difference):
  support.copy_checkpoint(MODEL_CHECKPOINT, str(tmp_path))
  with pytest.raises(script_io.InputError) as error:
    model_checks.check_output_dir_checkpoint(str(tmp_path), fixture_config(**overrides),
                                                heads)
  assert str(error.value) == (
      "--output_dir=%s holds a checkpoint of another model (model.ckpt-7: %s), which this run "
      "would load: choose another --output_dir, or delete the checkpoints in it (a model to "
      "start from is passed as --init_checkpoint)" % (tmp_path, difference))


def test_output_dir_checkpoint_without_a_global_step(tmp_path):
  # A released checkpoint copied there: a run restores a global step with the model.
  shutil.copy(MODEL_CHECKPOINT + ".index", str(tmp_path / "bert_model.ckpt.index"))
  shutil.copy(MODEL_CHECKPOINT + ".data-00000-of-00001",
              str(tmp_path / "bert_model.ckpt.data-00000-of-00001"))
  tf.train.update_checkpoint_state(str(tmp_path), str(tmp_path / "bert_model.ckpt"))
  with pytest.raises(script_io.InputError, match=(
      r"\(bert_model.ckpt: it has no variable global_step\), which this run would load")):
    model_checks.check_output_dir_checkpoint(str(tmp_path), fixture_config())


def write_checkpoint(prefix, variables):
  """Writes a checkpoint of the given {name: numpy value} at `prefix`."""
  with tf.Graph().as_default():
    for name, value in variables.items():
      tf.get_variable(name, initializer=value)
    saver = tf.train.Saver()
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      saver.save(session, prefix, write_meta_graph=False)


def test_init_checkpoint_without_bert_variables(tmp_path):
  checkpoint = str(tmp_path / "other.ckpt")
  write_checkpoint(checkpoint, {"dense/kernel": [[1.0]]})
  with pytest.raises(script_io.InputError, match=(
      r"^--init_checkpoint=\S+other.ckpt holds no variable of a BERT model \(no "
      r"bert/embeddings/word_embeddings\): the model would train from random weights")):
    model_checks.check_init_checkpoint(checkpoint, fixture_config())


def test_init_checkpoint_with_another_number_of_layers_warns(monkeypatch):
  warnings = []
  monkeypatch.setattr(tf.logging, "warning", lambda message, *args: warnings.append(
      message % args))
  model_checks.check_init_checkpoint(MODEL_CHECKPOINT, fixture_config())
  assert not warnings
  model_checks.check_init_checkpoint(MODEL_CHECKPOINT, fixture_config(num_hidden_layers=1))
  assert warnings == ["--init_checkpoint=%s has 2 encoder layers and the model 1: only the "
                      "first 1 are initialised from it" % MODEL_CHECKPOINT]


def test_initialisation_that_maps_no_variable_is_refused():
  with tf.Graph().as_default():
    tf.get_variable("output_weights", [2, 64])
    with pytest.raises(script_io.InputError, match=(
        r"^--init_checkpoint=\S+bert_model.ckpt holds none of the model's 1 variables \(such "
        r"as output_weights\): pass a checkpoint of this model$")):
      model_checks.init_from_checkpoint(MODEL_CHECKPOINT, use_tpu=False)


# ------------------------------------------------------------------------------------------------
# While training.

def test_nan_loss_names_its_step():
  with tf.Graph().as_default():
    global_step = tf.train.get_or_create_global_step()
    # The loss of the step with global step 3 is NaN.
    loss = tf.where(tf.equal(global_step, 3), float("nan"), 1.0)
    tf.add_to_collection(tf.GraphKeys.LOSSES, loss)
    train_op = tf.assign_add(global_step, 1)
    hook = training_guard._NanLossStepHook()  # pylint: disable=protected-access
    with pytest.raises(training_guard.NanLossError) as error:
      with tf.train.MonitoredSession(hooks=[hook]) as session:
        for _ in range(10):
          session.run(train_op)
  assert error.value.step == 3
  assert isinstance(error.value, tf.train.NanLossDuringTrainingError)


def touch_checkpoint(model_dir, name):
  """Makes the files of a checkpoint `name` and makes it the latest, as a Saver would."""
  for suffix in (".index", ".data-00000-of-00001", ".meta"):
    with open(os.path.join(model_dir, name + suffix), "w") as writer:
      writer.write("x")
  tf.train.update_checkpoint_state(model_dir, os.path.join(model_dir, name))


class Failed(Exception):
  pass


def run_and_fail(model_dir, names):
  """Writes the checkpoints `names` in the context manager's block, then fails."""
  with pytest.raises(Failed):
    with training_guard.discarding_checkpoints_without_progress(model_dir):
      os.makedirs(model_dir, exist_ok=True)
      for name in names:
        touch_checkpoint(model_dir, name)
      with open(os.path.join(model_dir, "events.out.tfevents.1"), "w"):
        pass
      raise Failed()


def test_a_failed_start_leaves_no_checkpoint(tmp_path):
  model_dir = str(tmp_path / "out")
  run_and_fail(model_dir, ["model.ckpt-0"])
  assert os.listdir(model_dir) == ["events.out.tfevents.1"]
  assert tf.train.latest_checkpoint(model_dir) is None


def test_a_failure_after_a_later_checkpoint_keeps_them_all(tmp_path):
  model_dir = str(tmp_path)
  run_and_fail(model_dir, ["model.ckpt-0", "model.ckpt-10"])
  assert tf.train.latest_checkpoint(model_dir).endswith("model.ckpt-10")
  assert os.path.exists(os.path.join(model_dir, "model.ckpt-0.index"))


def test_a_failed_resume_puts_the_checkpoint_state_back(tmp_path):
  model_dir = str(tmp_path)
  touch_checkpoint(model_dir, "bert_model.ckpt")  # No step in its name, nor a global_step: 0.
  with open(os.path.join(model_dir, "checkpoint"), "rb") as reader:
    state = reader.read()
  run_and_fail(model_dir, ["model.ckpt-0"])
  with open(os.path.join(model_dir, "checkpoint"), "rb") as reader:
    assert reader.read() == state
  assert not os.path.exists(os.path.join(model_dir, "model.ckpt-0.index"))
  assert os.path.exists(os.path.join(model_dir, "bert_model.ckpt.index"))


def test_a_run_that_ends_well_keeps_its_checkpoints(tmp_path):
  model_dir = str(tmp_path)
  with training_guard.discarding_checkpoints_without_progress(model_dir):
    touch_checkpoint(model_dir, "model.ckpt-0")
  assert tf.train.latest_checkpoint(model_dir).endswith("model.ckpt-0")
