"""Tests of RunOptions: the one value from which the estimator factory and every script's
model_fn take use_tpu, the strategy and the accumulation steps, so that they cannot disagree."""

import dataclasses
import inspect

from absl import flags
import pytest
import tensorflow.compat.v1 as tf

import estimator_setup
import flag_groups
import optimization
import script_io
import support

RunOptions = estimator_setup.RunOptions

MODEL_CONFIG = support.fixture_path("modeling", "bert_config.json")


def test_the_fields_are_the_flag_groups_with_their_defaults():
  flag_groups.define_tpu_flags()
  flag_groups.define_scale_flags()
  flag_groups.define_speed_flags()
  for field in dataclasses.fields(RunOptions):
    assert flags.FLAGS[field.name].default == field.default, field.name


def test_from_flag_values_keeps_the_defaults_of_flags_a_script_lacks():
  options = RunOptions.from_flag_values(
      {"use_tpu": False, "precision": "bf16", "batch_by_length": True, "vocab_file": "v.txt"})
  assert options == RunOptions(precision="bf16", batch_by_length=True)
  assert options.gradient_accumulation_steps == 1 and options.distribution_strategy == "none"
  assert options.trims_padding
  assert not RunOptions(use_tpu=True).trims_padding


@pytest.mark.parametrize("fields, message", [
    ({"use_tpu": True, "distribution_strategy": "mirrored"},
     "--use_tpu trains on TPU cores with TPUEstimator; --distribution_strategy=mirrored is for "
     "GPUs and CPUs: leave it at none"),
    ({"use_tpu": True, "gradient_accumulation_steps": 4},
     "--gradient_accumulation_steps=4: gradient accumulation is not supported with --use_tpu; "
     "use more TPU cores (--num_tpu_cores) for a larger batch"),
    ({"gradient_accumulation_steps": 0}, "--gradient_accumulation_steps=0: must be 1 or more"),
    ({"peer_timeout_seconds": 0}, "--peer_timeout_seconds=0: must be 1 or more"),
    ({"distribution_strategy": "multi_worker_mirrored", "num_gpus": 2},
     "--num_gpus is only for --distribution_strategy=mirrored; each worker of "
     "multi_worker_mirrored trains on all its visible GPUs (set CUDA_VISIBLE_DEVICES)"),
    ({"distribution_strategy": "parameter_server"},
     "--distribution_strategy=parameter_server: choose one of none, mirrored, "
     "multi_worker_mirrored"),
])
def test_contradicting_options_are_refused_when_made(fields, message):
  with pytest.raises(script_io.InputError) as error:
    RunOptions(**fields)
  assert str(error.value) == message
  with pytest.raises(script_io.InputError):
    dataclasses.replace(RunOptions(), **fields)


@pytest.fixture(scope="module")
def run_classifier():
  return support.load_script("run_classifier")


def classifier_model_fn(run_classifier, use_tpu=False, options=None):
  bert_config = run_classifier.modeling.BertConfig.from_json_file(MODEL_CONFIG)
  return run_classifier.model_fn_builder(bert_config, 2, None, 5e-5, 10, 1, use_tpu, use_tpu,
                                         options=options)


@pytest.mark.parametrize("script", ["run_classifier", "run_pretraining", "run_squad",
                                    "run_ner", "extract_features"])
def test_no_script_takes_the_run_options_by_another_route(script):
  parameters = inspect.signature(support.load_script(script).model_fn_builder).parameters
  assert "options" in parameters
  assert not {"gradient_accumulation_steps", "distribution_strategy", "compute_type",
              "precision"} & set(parameters)
  factory_parameters = inspect.signature(estimator_setup.make_estimator).parameters
  assert list(factory_parameters)[:3] == ["model_fn", "output_dir", "options"]
  assert not {field.name for field in dataclasses.fields(RunOptions)} & set(factory_parameters)


def test_the_model_fn_and_the_estimator_accumulate_alike(run_classifier, tmp_path, monkeypatch):
  options = RunOptions(gradient_accumulation_steps=4)
  model_fn = classifier_model_fn(run_classifier, options=options)
  batch_sizes = []

  def input_fn(params):
    batch_sizes.append(params["batch_size"])
    return tf.data.Dataset.from_tensors({
        "input_ids": tf.zeros([params["batch_size"], 8], tf.int32),
        "input_mask": tf.ones([params["batch_size"], 8], tf.int32),
        "segment_ids": tf.zeros([params["batch_size"], 8], tf.int32),
        "label_ids": tf.zeros([params["batch_size"]], tf.int32)}).repeat()

  accumulation_steps = []
  real_create_optimizer = optimization.create_optimizer

  def create_optimizer(*args, **kwargs):
    accumulation_steps.append(kwargs["gradient_accumulation_steps"])
    return real_create_optimizer(*args, **kwargs)

  monkeypatch.setattr(optimization, "create_optimizer", create_optimizer)
  estimator = estimator_setup.make_estimator(model_fn, str(tmp_path), options,
                                             train_batch_size=32, save_checkpoints_steps=1)
  estimator.train(input_fn, max_steps=1)
  assert batch_sizes == [8] and accumulation_steps == [4]
  # One update of 4 micro-batches of 8 examples.
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith("model.ckpt-1")


def test_a_model_fn_built_for_other_options_is_refused(run_classifier, tmp_path):
  model_fn = classifier_model_fn(run_classifier,
                                 options=RunOptions(gradient_accumulation_steps=4))
  with pytest.raises(ValueError, match=r"the model_fn was built for RunOptions\(.*"
                     r"gradient_accumulation_steps=4.* but the estimator is asked for "
                     r"RunOptions\(.*gradient_accumulation_steps=1.*: build both from the same "
                     r"RunOptions"):
    estimator_setup.make_estimator(model_fn, str(tmp_path), RunOptions(), train_batch_size=32)


def test_use_tpu_contradicting_the_options_is_refused(run_classifier):
  with pytest.raises(ValueError, match=r"^use_tpu=True contradicts the run options' "
                     r"use_tpu=False: pass the same value$"):
    classifier_model_fn(run_classifier, use_tpu=True, options=RunOptions())
  # Without options, the original's signature: the defaults with that use_tpu.
  assert classifier_model_fn(run_classifier, use_tpu=True).run_options == RunOptions(
      use_tpu=True)
