"""The scripts' fast path (--precision=bf16 --batch_by_length, and --use_xla in training)
against the original.

Runs run_classifier.py and extract_features.py as a user would, three times each: as the
original computes (float32, every batch padded to max_seq_length: the scripts with
RunOptions.trims_padding patched to False; and extract_features writing its lines as the
original did, every value rounded and printed in Python), with the default flags (float32,
each batch cut to its longest sequence) and on the fast path, on the real 6-layer, 384-wide MiniLM
(converted with convert_hf_checkpoint.hf_to_original) and a generated paraphrase task whose
sentence pairs fill about half of max_seq_length=128:

  fine-tuning: 128 steps of 32 examples (one epoch), examples/s from the Estimator's own
    global_step/sec lines after the first 24 steps (start-up, and XLA compiling each new batch
    shape, which a real fine-tuning of thousands of steps amortises), and over all 128 steps
    with start-up and compiles; each model's dev accuracy;
  prediction: every path predicts from the checkpoint the original path fine-tuned;
    examples/s, largest probability difference and argmax agreement;
  extract_features: examples/s and the differences of the last layer's values;
  prediction and extract_features also run the fast path in float32 (no bf16 rounding);
  the fraction of this machine's bfloat16 matmul rate the fast path's useful work reaches.

Times come from the scripts' own log lines, stamped by the wrapper that starts them. Takes
about 15 minutes on a 2-core CPU. Usage: .venv/bin/python bench/bench_fast_path.py
"""

import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

import convert_hf_checkpoint  # pylint: disable=wrong-import-position
import support  # pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position

MAX_SEQ_LENGTH = 128
BATCH_SIZE = 32
TRAIN_STEPS = 128
LOG_EVERY_STEPS = 8
WARM_UP_WINDOWS = 3  # of LOG_EVERY_STEPS steps: start-up and XLA compiling each new shape
NUM_DEV = 320
NUM_TEST = 3200
# On a machine without GPU the scripts then run without XLA (precision.xla_pays).
TRAIN_FAST_FLAGS = ["--precision=bf16", "--use_xla=true", "--batch_by_length=true"]
INFERENCE_FAST_FLAGS = ["--precision=bf16", "--batch_by_length=true"]

# Runs a script with its log lines stamped with the time, for the timings below. With
# "original" first, the script computes as the original code did: batches keep their padding,
# and extract_features writes each line as the original did, rounding and printing every value
# in Python through json.dumps.
WRAPPER = """
import json, logging, sys
import estimator_setup, script_io
for handler in logging.getLogger("tensorflow").handlers:
  handler.setFormatter(logging.Formatter("%(created)f %(levelname)s:%(message)s"))

def original_feature_line(feature, result, layer_indexes):
  outputs = [result["layer_output_%d" % j] for j in range(len(layer_indexes))]
  return json.dumps({"linex_index": feature.unique_id, "features": [
      {"token": token, "layers": [{"index": index, "values": [round(x, 6) for x in
                                                              output[i].tolist()]}
                                  for index, output in zip(layer_indexes, outputs)]}
      for i, token in enumerate(feature.tokens)]})

mode, script = sys.argv[1:3]
sys.argv = sys.argv[2:]
module = __import__(script)
if mode == "original":
  estimator_setup.RunOptions.trims_padding = property(lambda options: False)
  module.feature_line = original_feature_line
script_io.run_main(module.main)
"""

# (name, extra flags, whether the script computes as the original did)
TRAIN_PATHS = (("original", [], True), ("default", [], False), ("fast", TRAIN_FAST_FLAGS, False))
# Prediction and extract_features also run the fast path in float32.
INFERENCE_PATHS = (("original", [], True), ("default", [], False),
                   ("fast", INFERENCE_FAST_FLAGS, False),
                   ("fast_fp32", INFERENCE_FAST_FLAGS[1:], False))


def run(script, args, as_original, env_overrides=None):
  """Runs a script (a name without .py); returns [(time, message)] of its log lines."""
  result = subprocess.run(
      [sys.executable, "-c", WRAPPER, "original" if as_original else "ours", script] + args,
      cwd=REPO, capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=REPO, **(env_overrides or {})))
  if result.returncode:
    raise RuntimeError(result.stderr[-3000:])
  lines = []
  for line in result.stderr.splitlines():
    match = re.match(r"(\d+\.\d+) \w+:(.*)", line)
    if match:
      lines.append((float(match.group(1)), match.group(2)))
  return lines


def first_time(lines, pattern, last=False):
  times = [stamp for stamp, message in lines if re.search(pattern, message)]
  return times[-1] if last else times[0]


def make_task(data_dir, vocab_file, num_train, num_dev, num_test):
  """Writes an MRPC-layout paraphrase task of train, dev and test pairs.

  Returns:
    (the mean WordPiece length of the pairs, capped at MAX_SEQ_LENGTH; every pair's length).
  """
  with open(vocab_file) as reader:
    words = [w.strip() for w in reader][2000:8000]
  words = [w for w in words if w.isalpha() and len(w) > 2]
  rng = random.Random(0)

  def pair():
    # A paraphrase changes 2 words of the first sentence; a non-paraphrase is another sentence
    # of the same length. (With 10 words changed, runs of every path sometimes stayed at chance
    # for the whole epoch: accuracies could not be compared.)
    first = rng.sample(words, rng.randint(18, 40))
    label = int(rng.random() < 0.5)
    if not label:
      return label, first, rng.sample(words, len(first))
    second = list(first)
    for position in rng.sample(range(len(second)), 2):
      second[position] = rng.choice(words)
    return label, first, second

  lengths = []
  for name, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
    with open(os.path.join(data_dir, name + ".tsv"), "w") as writer:
      writer.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
      for index in range(count):
        label, first, second = pair()
        lengths.append(len(first) + len(second) + 3)
        writer.write("%d\t%d\t%d\t%s\t%s\n" % (label if name != "test" else index, index, index,
                                               " ".join(first), " ".join(second)))
  return float(np.mean(np.minimum(lengths, MAX_SEQ_LENGTH))), lengths


def make_model_and_task(work, num_train, num_dev, num_test):
  """Converts the real MiniLM into work/model and writes the paraphrase task into work/data.

  Returns:
    (the model's folder, the task's folder, what `make_task` returns).
  """
  model_dir = os.path.join(work, "model")
  convert_hf_checkpoint.hf_to_original(support.real_model_dir(), model_dir)
  data_dir = os.path.join(work, "data")
  os.makedirs(data_dir)
  task = make_task(data_dir, os.path.join(model_dir, "vocab.txt"), num_train, num_dev, num_test)
  return model_dir, data_dir, task


def task_flags(model_dir, data_dir):
  """The run_classifier.py flags that name the task, the model's files and the lengths."""
  return ["--task_name=mrpc", "--data_dir=" + data_dir,
          "--vocab_file=" + os.path.join(model_dir, "vocab.txt"),
          "--bert_config_file=" + os.path.join(model_dir, "bert_config.json"),
          "--max_seq_length=%d" % MAX_SEQ_LENGTH, "--do_lower_case=true"]


def spread(values, form="%.2f"):
  """'mean (min-max)' of values."""
  return (form + " (" + form + "-" + form + ")") % (statistics.mean(values), min(values),
                                                    max(values))


def bf16_matmul_rate():
  """GFLOP/s of a 2048x2048 bfloat16 matmul on this machine."""
  with tf.Graph().as_default():
    a = tf.cast(tf.random.normal([2048, 2048]), tf.bfloat16)
    product = tf.reduce_sum(tf.cast(tf.matmul(a, a), tf.float32))
    with tf.Session() as session:
      session.run(product)
      start = time.time()
      for _ in range(20):
        session.run(product)
      return 20 * 2 * 2048 ** 3 / (time.time() - start) / 1e9


def train_flops_per_example(lengths, hidden=384, intermediate=1536, layers=6):
  """Useful matmul FLOPs (forward + backward) per example, at the real lengths."""
  lengths = np.minimum(np.array(lengths, dtype=np.float64), MAX_SEQ_LENGTH)
  per_layer = 2 * lengths * (4 * hidden * hidden + 2 * hidden * intermediate) + (
      4 * lengths ** 2 * hidden)
  return float(np.mean(3 * layers * per_layer))


def measure(work):
  """Trains, evaluates and predicts with each path in `work`; prints the table."""
  tf.disable_v2_behavior()
  model_dir, data_dir, (mean_length, lengths) = make_model_and_task(
      work, TRAIN_STEPS * BATCH_SIZE, NUM_DEV, NUM_TEST)
  vocab = os.path.join(model_dir, "vocab.txt")
  common = task_flags(model_dir, data_dir)
  init = "--init_checkpoint=" + os.path.join(model_dir, "bert_model.ckpt")
  rows, notes = [], []

  train_rates, whole_rates, accuracies = {}, {}, {}
  for name, extra, as_original in TRAIN_PATHS:
    output_dir = os.path.join(work, "train_" + name)
    lines = run("run_classifier", common + extra + [
        init, "--output_dir=" + output_dir, "--do_train=true", "--do_eval=true",
        "--train_batch_size=%d" % BATCH_SIZE, "--learning_rate=5e-5",
        "--num_train_epochs=1", "--iterations_per_loop=%d" % LOG_EVERY_STEPS], as_original)
    # The Estimator's rate over each window of LOG_EVERY_STEPS steps; windows of equal steps
    # combine by the harmonic mean.
    window_rates = [float(re.search(r"global_step/sec: (\S+)", message).group(1))
                    for _, message in lines if "global_step/sec" in message]
    steady = window_rates[WARM_UP_WINDOWS:]
    train_rates[name] = BATCH_SIZE * len(steady) / sum(1 / rate for rate in steady)
    seconds = (first_time(lines, r"before saving checkpoint %d\b" % TRAIN_STEPS) -
               first_time(lines, r"Saving checkpoints for 0 "))
    whole_rates[name] = TRAIN_STEPS * BATCH_SIZE / seconds
    with open(os.path.join(output_dir, "eval_results.txt")) as reader:
      accuracies[name] = float(re.search(r"eval_accuracy = (\S+)", reader.read()).group(1))
  rows.append(("fine-tuning, examples/s (after the first %d steps)" %
               (WARM_UP_WINDOWS * LOG_EVERY_STEPS), train_rates))
  rows.append(("fine-tuning, examples/s over all %d steps (start-up and compiles included)" %
               TRAIN_STEPS, whole_rates))
  rows.append(("dev accuracy (%d pairs), %%" % NUM_DEV,
               {name: 100 * value for name, value in accuracies.items()}))

  checkpoint = tf.train.latest_checkpoint(os.path.join(work, "train_original"))
  predictions, predict_rates = {}, {}
  for name, extra, as_original in INFERENCE_PATHS:
    output_dir = os.path.join(work, "predict_" + name)
    lines = run("run_classifier", common + extra + [
        "--init_checkpoint=" + checkpoint, "--output_dir=" + output_dir, "--do_predict=true",
        "--predict_batch_size=%d" % BATCH_SIZE], as_original)
    seconds = (first_time(lines, "prediction_loop marked as finished") -
               first_time(lines, "Done running local_init_op", last=True))
    predict_rates[name] = NUM_TEST / seconds
    predictions[name] = np.loadtxt(os.path.join(output_dir, "test_results.tsv"))
  rows.append(("prediction, examples/s", predict_rates))

  input_file = os.path.join(work, "sentences.txt")
  with open(os.path.join(data_dir, "test.tsv")) as reader, open(input_file, "w") as writer:
    for line in list(reader)[1:NUM_DEV + 1]:
      columns = line.rstrip("\n").split("\t")
      writer.write("%s ||| %s\n" % (columns[3], columns[4]))
  features, extract_rates = {}, {}
  for name, extra, as_original in INFERENCE_PATHS:
    output_file = os.path.join(work, "features_%s.jsonl" % name)
    lines = run("extract_features", [
        "--input_file=" + input_file, "--output_file=" + output_file, "--vocab_file=" + vocab,
        "--bert_config_file=" + os.path.join(model_dir, "bert_config.json"), init,
        "--layers=-1", "--max_seq_length=%d" % MAX_SEQ_LENGTH, "--batch_size=%d" % BATCH_SIZE,
        "--do_lower_case=true"] + extra, as_original)
    seconds = (first_time(lines, r"Wrote \d+ lines to") -
               first_time(lines, "Done running local_init_op", last=True))
    extract_rates[name] = NUM_DEV / seconds
    with open(output_file) as reader:
      features[name] = np.concatenate([
          np.array([token["layers"][0]["values"] for token in json.loads(line)["features"]])
          for line in reader])
  rows.append(("extract_features, examples/s", extract_rates))

  rate = bf16_matmul_rate()
  fast_gflops = train_rates["fast"] * train_flops_per_example(lengths) / 1e9
  notes.append("sentence pairs: %.1f of %d positions on average" % (mean_length, MAX_SEQ_LENGTH))
  for name, _, _ in INFERENCE_PATHS[1:]:
    difference = np.abs(predictions["original"] - predictions[name])
    agreement = np.mean(predictions["original"].argmax(1) == predictions[name].argmax(1))
    values_difference = np.abs(features["original"] - features[name])
    notes.append("%s against original: probabilities differ by at most %.1e (same argmax for "
                 "%.1f%%); last-layer values (mean magnitude %.2f) by at most %.1e, on average "
                 "%.1e" % (name, difference.max(), 100 * agreement,
                           np.abs(features["original"]).mean(), values_difference.max(),
                           values_difference.mean()))
  notes.append("bfloat16 2048x2048 matmul: %.0f GFLOP/s; fast-path fine-tuning does %.0f "
               "GFLOP/s of useful matmul work (%.0f%%)" % (rate, fast_gflops,
                                                           100 * fast_gflops / rate))

  print("| | original: fp32, full padding | default flags: fp32, batches cut | fast: %s "
        "(training), %s (inference) | fast in float32: %s |" % (
            " ".join(TRAIN_FAST_FLAGS), " ".join(INFERENCE_FAST_FLAGS),
            " ".join(INFERENCE_FAST_FLAGS[1:])))
  print("| --- | ---: | ---: | ---: | ---: |")
  for label, values in rows:
    cells = []
    for name, _, _ in INFERENCE_PATHS:
      if name not in values:
        cells.append("-")
      elif name == "original" or "accuracy" in label:
        cells.append("%.1f" % values[name])
      else:
        cells.append("%.1f (%.2fx)" % (values[name], values[name] / values["original"]))
    print("| %s | %s |" % (label, " | ".join(cells)))
  for note in notes:
    print("- " + note)


def main():
  # The checkpoints and records (gigabytes for some benchmarks) go when it ends or fails.
  with tempfile.TemporaryDirectory(prefix="bench_fast_path_") as work:
    measure(work)


if __name__ == "__main__":
  main()
