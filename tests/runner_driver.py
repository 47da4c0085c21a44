"""A tiny BERT classifier trained through runner.Runner, for tests/test_runner.py.

Imported, it gives the model_fn and input_fns; run as a script with a JSON spec, it trains
and evaluates a list of runs in one process, which is how the tests get logical CPUs (set
before TensorFlow starts), worker processes (TF_CONFIG) and signals:

  python runner_driver.py spec.json

spec: {"logical_cpus": 2 (optional), "bert_config_file", "init_checkpoint", "results_file",
       "runs": [{"name", "model_dir", "strategy": "none" | "mirrored" | "multi_worker",
                 "train_batch_size", "accumulation_steps", "max_steps",
                 "save_checkpoints_steps", "keep_checkpoint_max" (optional)}, ...]}
The results file gets, per run, {"eval_loss", "global_step"} or {"error": message}. A run
stopped by a signal prints "INTERRUPTED: <message>" and ends the process with status 3.
"""

import json
import sys

import numpy as np
import tensorflow as tf2
import tensorflow.compat.v1 as tf

import modeling
import optimization
import runner

NUM_EXAMPLES, SEQ_LENGTH, NUM_LABELS = 64, 8, 2
_DATA = np.random.RandomState(0)
INPUT_IDS = _DATA.randint(0, 20, size=(NUM_EXAMPLES, SEQ_LENGTH)).astype(np.int32)
LABELS = _DATA.randint(0, NUM_LABELS, size=(NUM_EXAMPLES,)).astype(np.int32)

BERT_CONFIG = {
    "vocab_size": 20, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 24, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "max_position_embeddings": SEQ_LENGTH,
    "type_vocab_size": 2, "initializer_range": 0.02,
}
LEARNING_RATE, NUM_TRAIN_STEPS = 0.01, 10


def train_input_fn(params):
  """The examples in order, repeated, in batches of params["batch_size"]."""
  dataset = tf.data.Dataset.from_tensor_slices({"input_ids": INPUT_IDS, "labels": LABELS})
  return dataset.repeat().batch(params["batch_size"], drop_remainder=True)


def one_batch_input_fn(params):
  """The first params["batch_size"] examples, again and again: a resumed run sees the same."""
  batch = {"input_ids": INPUT_IDS[:params["batch_size"]],
           "labels": LABELS[:params["batch_size"]]}
  return tf.data.Dataset.from_tensors(batch).repeat()


def eval_input_fn(params):
  """All examples once, in batches of params["batch_size"]."""
  dataset = tf.data.Dataset.from_tensor_slices({"input_ids": INPUT_IDS, "labels": LABELS})
  return dataset.batch(params["batch_size"])


def write_init_checkpoint(bert_config, checkpoint_path):
  """Writes freshly initialised variables of the model below to checkpoint_path."""
  with tf.Graph().as_default():
    model = modeling.BertModel(modeling.BertConfig.from_dict(bert_config), is_training=False,
                               input_ids=tf.zeros([1, SEQ_LENGTH], tf.int32))
    _classifier_logits(model.get_pooled_output())
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver().save(session, checkpoint_path)


def _classifier_logits(pooled_output):
  kernel = tf.get_variable("cls/kernel", [BERT_CONFIG["hidden_size"], NUM_LABELS],
                           initializer=tf.truncated_normal_initializer(stddev=0.02))
  bias = tf.get_variable("cls/bias", [NUM_LABELS], initializer=tf.zeros_initializer())
  return tf.matmul(pooled_output, kernel) + bias


def model_fn_builder(bert_config_file, init_checkpoint, accumulation_steps=1,
                     spec_type=None):
  """Returns a model_fn of the tiny classifier, initialised from init_checkpoint.

  Args:
    bert_config_file: path of a BERT config.
    init_checkpoint: the checkpoint every variable starts from.
    accumulation_steps: micro-batches per update (optimization.create_optimizer).
    spec_type: the class of the spec returned: runner.ModelSpec (default) or
      tf.estimator.tpu.TPUEstimatorSpec.
  """
  spec_type = spec_type or runner.ModelSpec

  def model_fn(features, labels, mode, params):  # pylint: disable=unused-argument
    model = modeling.BertModel(modeling.BertConfig.from_json_file(bert_config_file),
                               is_training=mode == runner.ModeKeys.TRAIN,
                               input_ids=features["input_ids"])
    logits = _classifier_logits(model.get_pooled_output())
    example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=features["labels"], logits=logits)
    loss = tf.reduce_mean(example_loss)
    tf.train.init_from_checkpoint(init_checkpoint, {"bert/": "bert/", "cls/": "cls/"})
    if mode == runner.ModeKeys.TRAIN:
      train_op = optimization.create_optimizer(
          loss, LEARNING_RATE, NUM_TRAIN_STEPS, 1, False,
          gradient_accumulation_steps=accumulation_steps)
      return spec_type(mode=mode, loss=loss, train_op=train_op)
    if mode == runner.ModeKeys.EVAL:
      return spec_type(mode=mode, loss=loss, eval_metrics=(
          lambda values: {"example_loss": tf.metrics.mean(values)}, [example_loss]))
    return spec_type(mode=mode, predictions={"logits": logits})

  return model_fn


def _strategy(name):
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(
        [device.name for device in tf.config.list_logical_devices("CPU")])
  if name == "multi_worker":
    return tf.distribute.experimental.MultiWorkerMirroredStrategy()
  return None


def _train_and_evaluate(spec, run):
  model_fn = model_fn_builder(spec["bert_config_file"], spec["init_checkpoint"],
                              run.get("accumulation_steps", 1))
  try:
    trainer = runner.Runner(
        model_fn, run["model_dir"], train_batch_size=run["train_batch_size"],
        eval_batch_size=16, save_checkpoints_steps=run["save_checkpoints_steps"],
        keep_checkpoint_max=run.get("keep_checkpoint_max", 5), log_step_count_steps=1,
        strategy=_strategy(run["strategy"]))
  except ValueError as error:
    return {"error": str(error)}
  try:
    trainer.train(train_input_fn, max_steps=run["max_steps"])
  except runner.TrainingInterrupted as interruption:
    print("INTERRUPTED: %s" % interruption, flush=True)
    sys.exit(3)
  if run["strategy"] == "multi_worker":
    return {}
  result = trainer.evaluate(eval_input_fn)
  return {"eval_loss": float(result["example_loss"]), "global_step": int(result["global_step"])}


def main(spec_file):
  with open(spec_file) as reader:
    spec = json.load(reader)
  if spec.get("logical_cpus"):
    # Before TensorFlow looks for its devices, which nothing above has made it do.
    cpu = tf2.config.list_physical_devices("CPU")[0]
    tf2.config.set_logical_device_configuration(
        cpu, [tf2.config.LogicalDeviceConfiguration()] * spec["logical_cpus"])
  tf.logging.set_verbosity(tf.logging.INFO)
  results = {run["name"]: _train_and_evaluate(spec, run) for run in spec["runs"]}
  with open(spec["results_file"], "w") as writer:
    json.dump(results, writer)


if __name__ == "__main__":
  main(sys.argv[1])
