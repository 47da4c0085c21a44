"""runner.Runner against TPUEstimator, on the same graph: run_classifier's model_fn.

Both fine-tune the fixture classifier (tests/fixtures: 2 layers, 64 wide, fine-tuned
checkpoint) on the fixture's MRPC training set at max_seq_length=64, built by
run_classifier.py's own model_fn and input_fn, in the same process, taking turns for ROUNDS
rounds so that the machine's load falls on both alike:

  training: STEPS steps of BATCH_SIZE examples; steady examples/s over the steps after the
    first WARM_UP_STEPS (timed by a hook that both run from the model_fn's training_hooks),
    and examples/s of the whole train() call (graph, session, checkpoints at the start and the
    end). Both log and write summaries every 100 steps (TPUEstimator with
    iterations_per_loop=1; the scripts' 1000 makes it log every step).
  evaluation and prediction: the whole call over the training set (REPEATS passes).

The best round of each is printed (the one least slowed by other work on the machine; a
shared machine's load swings the rounds by a third), and the runner's ratio to TPUEstimator
(above 1: the runner is faster). The model is small, so the figures weigh the training loop's
own overhead more than a real model's would. Without tf.estimator (TensorFlow 2.16 and later)
only the runner's figures are printed. Takes a few minutes on a 2-core CPU.
Usage: .venv/bin/python bench/bench_runner.py
"""

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

import estimator_setup  # pylint: disable=wrong-import-position
import modeling  # pylint: disable=wrong-import-position
import runner  # pylint: disable=wrong-import-position
import support  # pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position
import tokenization  # pylint: disable=wrong-import-position

ROUNDS = 5
STEPS = 300
WARM_UP_STEPS = 30
BATCH_SIZE = 32
MAX_SEQ_LENGTH = 64
REPEATS = 20  # passes over the 300 training examples in evaluation and prediction


class StepTimes(tf.train.SessionRunHook):
  """Records the time at the end of each training step."""

  def __init__(self):
    self.times = []

  def after_run(self, run_context, run_values):
    self.times.append(time.perf_counter())


def timed_model_fn(model_fn, step_times):
  """Wraps a TPUEstimator model_fn to add step_times to its training hooks."""

  def wrapped(features, labels, mode, params):
    spec = model_fn(features, labels, mode, params)
    return spec._replace(training_hooks=tuple(spec.training_hooks) + (step_times,))

  return wrapped


def make_inputs(rc, work):
  """Writes the fixture's training set as a TFRecord; returns the train and read-once input_fns."""
  processor = rc.MrpcProcessor()
  tokenizer = tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)
  path = os.path.join(work, "train.tf_record")
  rc.file_based_convert_examples_to_features(
      processor.get_train_examples(support.fixture_path("classifier", "data")),
      processor.get_labels(), MAX_SEQ_LENGTH, tokenizer, path)
  train_input_fn = rc.file_based_input_fn_builder(
      path, MAX_SEQ_LENGTH, is_training=True, drop_remainder=True)
  read_once_input_fn = rc.file_based_input_fn_builder(
      path, MAX_SEQ_LENGTH, is_training=False, drop_remainder=False)

  def repeated_input_fn(params):
    return read_once_input_fn(params).repeat(REPEATS)

  return train_input_fn, repeated_input_fn


def make_trainer(kind, model_fn, model_dir):
  if kind == "runner":
    return runner.Runner(model_fn, model_dir, train_batch_size=BATCH_SIZE,
                         eval_batch_size=BATCH_SIZE, predict_batch_size=BATCH_SIZE,
                         save_checkpoints_steps=1000, log_step_count_steps=100)
  return tf.estimator.tpu.TPUEstimator(
      use_tpu=False, model_fn=estimator_setup.tpu_estimator_model_fn(model_fn),
      config=tf.estimator.tpu.RunConfig(
          model_dir=model_dir, save_checkpoints_steps=1000,
          tpu_config=tf.estimator.tpu.TPUConfig(iterations_per_loop=1)),
      train_batch_size=BATCH_SIZE, eval_batch_size=BATCH_SIZE, predict_batch_size=BATCH_SIZE)


def one_round(kind, rc, bert_config, inputs, work):
  """Trains, evaluates and predicts with one kind of trainer; returns its figures."""
  train_input_fn, repeated_input_fn = inputs
  step_times = StepTimes()
  model_fn = rc.model_fn_builder(
      bert_config, num_labels=2, init_checkpoint=support.fixture_path("classifier",
                                                                      "finetuned.ckpt"),
      learning_rate=2e-5, num_train_steps=STEPS, num_warmup_steps=STEPS // 10, use_tpu=False,
      use_one_hot_embeddings=False)
  trainer = make_trainer(kind, timed_model_fn(model_fn, step_times),
                         tempfile.mkdtemp(prefix=kind + "_", dir=work))
  start = time.perf_counter()
  trainer.train(train_input_fn, max_steps=STEPS)
  whole = STEPS * BATCH_SIZE / (time.perf_counter() - start)
  steady_times = step_times.times[WARM_UP_STEPS:]
  steady = BATCH_SIZE * (len(steady_times) - 1) / (steady_times[-1] - steady_times[0])
  start = time.perf_counter()
  trainer.evaluate(repeated_input_fn)
  evaluation = time.perf_counter() - start
  start = time.perf_counter()
  num_predictions = sum(1 for _ in trainer.predict(repeated_input_fn))
  prediction = time.perf_counter() - start
  return {"training, steady examples/s": steady, "training, whole-run examples/s": whole,
          "evaluation, whole-run examples/s": num_predictions / evaluation,
          "prediction, whole-run examples/s": num_predictions / prediction}


def measure(work):
  """Times the Estimator and the runner in `work`; prints the best of ROUNDS rounds."""
  tf.logging.set_verbosity(tf.logging.WARN)
  rc = support.load_script("run_classifier")
  bert_config = modeling.BertConfig.from_json_file(
      support.fixture_path("modeling", "bert_config.json"))
  inputs = make_inputs(rc, work)
  kinds = ["estimator", "runner"] if hasattr(tf, "estimator") else ["runner"]
  figures = {kind: [] for kind in kinds}
  for _ in range(ROUNDS):
    for kind in kinds:
      figures[kind].append(one_round(kind, rc, bert_config, inputs, work))
  best = {kind: {name: max(round_figures[name] for round_figures in rounds)
                 for name in rounds[0]} for kind, rounds in figures.items()}

  print("TensorFlow %s, fixture classifier, batch %d, max_seq_length %d, best of %d rounds" %
        (tf.__version__, BATCH_SIZE, MAX_SEQ_LENGTH, ROUNDS))
  print("| | %s |%s" % (" | ".join(kinds), " runner / estimator |" if len(kinds) > 1 else ""))
  print("| --- |%s" % (" ---: |" * (len(kinds) + len(kinds) // 2)))
  for name in best["runner"]:
    cells = ["%.1f" % best[kind][name] for kind in kinds]
    if len(kinds) > 1:
      cells.append("%.2f" % (best["runner"][name] / best["estimator"][name]))
    print("| %s | %s |" % (name, " | ".join(cells)))


def main():
  # The checkpoints and records (gigabytes for some benchmarks) go when it ends or fails.
  with tempfile.TemporaryDirectory(prefix="bench_runner_") as work:
    measure(work)


if __name__ == "__main__":
  main()
