"""The scripts' fast path (--precision=bf16 --use_xla --batch_by_length) against the original.

Runs run_classifier.py and extract_features.py as a user would, three times each: as the
original computes (float32, every batch padded to max_seq_length: the scripts with
estimator_lib.trims_padding patched to False), with the default flags (float32, each batch cut
to its longest sequence) and on the fast path, on the real 6-layer, 384-wide MiniLM
(converted with convert_hf_checkpoint.hf_to_original) and a generated paraphrase task whose
sentence pairs fill about half of max_seq_length=128:

  fine-tuning: 48 steps of 32 examples, examples/s between the checkpoints of steps 8 and 48
    (start-up and the first steps excluded), and each model's dev accuracy;
  prediction: every path predicts from the checkpoint the original path fine-tuned;
    examples/s, largest probability difference and argmax agreement;
  extract_features: examples/s and the largest difference of the last layer's values;
  the fraction of this machine's bfloat16 matmul rate the fast path's useful work reaches.

Times come from the scripts' own log lines, stamped by the wrapper that starts them. Takes
about 6 minutes on a 2-core CPU. Usage: .venv/bin/python bench/bench_fast_path.py
"""

import json
import os
import random
import re
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
TRAIN_STEPS = 48
TIMED_FROM_STEP = 8
NUM_DEV = 320
NUM_TEST = 640
FAST_FLAGS = ["--precision=bf16", "--use_xla=true", "--batch_by_length=true"]

# Runs a script with its log lines stamped with the time, for the timings below.
# With "full_padding" first, the batches keep their padding, as the original computes them.
WRAPPER = """
import logging, runpy, sys
import tensorflow as tf
import estimator_lib
for handler in logging.getLogger("tensorflow").handlers:
  handler.setFormatter(logging.Formatter("%(created)f %(levelname)s:%(message)s"))
if sys.argv[1] == "full_padding":
  estimator_lib.trims_padding = lambda: False
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# (name, extra flags, whether batches keep their padding)
PATHS = (("original", [], True), ("default", [], False), ("fast", FAST_FLAGS, False))


def run(script, args, full_padding):
  """Runs a script; returns [(time, message)] of its log lines."""
  result = subprocess.run(
      [sys.executable, "-c", WRAPPER, "full_padding" if full_padding else "trimmed",
       os.path.join(REPO, script)] + args,
      cwd=REPO, capture_output=True, text=True, check=False)
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


def make_task(data_dir, vocab_file):
  """Writes an MRPC-layout paraphrase task; returns the mean wordpiece length of the pairs."""
  with open(vocab_file) as reader:
    words = [w.strip() for w in reader][2000:8000]
  words = [w for w in words if w.isalpha() and len(w) > 2]
  rng = random.Random(0)

  def pair():
    # A paraphrase changes 2 words of the first sentence, a non-paraphrase 10.
    first = rng.sample(words, rng.randint(18, 40))
    label = int(rng.random() < 0.5)
    second = list(first)
    for position in rng.sample(range(len(second)), 2 if label else 10):
      second[position] = rng.choice(words)
    return label, first, second

  lengths = []
  for name, count in (("train", TRAIN_STEPS * BATCH_SIZE), ("dev", NUM_DEV),
                      ("test", NUM_TEST)):
    with open(os.path.join(data_dir, name + ".tsv"), "w") as writer:
      writer.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
      for index in range(count):
        label, first, second = pair()
        lengths.append(len(first) + len(second) + 3)
        writer.write("%d\t%d\t%d\t%s\t%s\n" % (label if name != "test" else index, index, index,
                                               " ".join(first), " ".join(second)))
  return float(np.mean(np.minimum(lengths, MAX_SEQ_LENGTH))), lengths


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


def main():
  tf.disable_v2_behavior()
  work = tempfile.mkdtemp(prefix="bench_fast_path_")
  model_dir = os.path.join(work, "model")
  convert_hf_checkpoint.hf_to_original(support.real_model_dir(), model_dir)
  data_dir = os.path.join(work, "data")
  os.makedirs(data_dir)
  vocab = os.path.join(model_dir, "vocab.txt")
  mean_length, lengths = make_task(data_dir, vocab)
  common = ["--task_name=mrpc", "--data_dir=" + data_dir, "--vocab_file=" + vocab,
            "--bert_config_file=" + os.path.join(model_dir, "bert_config.json"),
            "--max_seq_length=%d" % MAX_SEQ_LENGTH, "--do_lower_case=true"]
  init = "--init_checkpoint=" + os.path.join(model_dir, "bert_model.ckpt")
  rows, notes = [], []

  train_rates, accuracies = {}, {}
  for name, extra, full_padding in PATHS:
    output_dir = os.path.join(work, "train_" + name)
    lines = run("run_classifier.py", common + extra + [
        init, "--output_dir=" + output_dir, "--do_train=true", "--do_eval=true",
        "--train_batch_size=%d" % BATCH_SIZE, "--learning_rate=5e-5",
        "--num_train_epochs=1", "--save_checkpoints_steps=%d" % TIMED_FROM_STEP], full_padding)
    seconds = (first_time(lines, r"Saving checkpoints for %d " % TRAIN_STEPS) -
               first_time(lines, r"Saving checkpoints for %d " % TIMED_FROM_STEP))
    train_rates[name] = (TRAIN_STEPS - TIMED_FROM_STEP) * BATCH_SIZE / seconds
    with open(os.path.join(output_dir, "eval_results.txt")) as reader:
      accuracies[name] = float(re.search(r"eval_accuracy = (\S+)", reader.read()).group(1))
  rows.append(("fine-tuning, examples/s", train_rates))
  rows.append(("dev accuracy (%d pairs), %%" % NUM_DEV,
               {name: 100 * value for name, value in accuracies.items()}))

  checkpoint = tf.train.latest_checkpoint(os.path.join(work, "train_original"))
  predictions, predict_rates = {}, {}
  for name, extra, full_padding in PATHS:
    output_dir = os.path.join(work, "predict_" + name)
    lines = run("run_classifier.py", common + extra + [
        "--init_checkpoint=" + checkpoint, "--output_dir=" + output_dir, "--do_predict=true",
        "--predict_batch_size=%d" % BATCH_SIZE], full_padding)
    seconds = (first_time(lines, "prediction_loop marked as finished") -
               first_time(lines, "Done running local_init_op", last=True))
    predict_rates[name] = NUM_TEST / seconds
    predictions[name] = np.loadtxt(os.path.join(output_dir, "test_results.tsv"))
  rows.append(("prediction, examples/s", predict_rates))
  max_difference = np.abs(predictions["original"] - predictions["fast"]).max()
  agreement = np.mean(predictions["original"].argmax(1) == predictions["fast"].argmax(1))

  input_file = os.path.join(work, "sentences.txt")
  with open(os.path.join(data_dir, "test.tsv")) as reader, open(input_file, "w") as writer:
    for line in list(reader)[1:NUM_DEV + 1]:
      columns = line.rstrip("\n").split("\t")
      writer.write("%s ||| %s\n" % (columns[3], columns[4]))
  features, extract_rates = {}, {}
  for name, extra, full_padding in PATHS:
    output_file = os.path.join(work, "features_%s.jsonl" % name)
    lines = run("extract_features.py", [
        "--input_file=" + input_file, "--output_file=" + output_file, "--vocab_file=" + vocab,
        "--bert_config_file=" + os.path.join(model_dir, "bert_config.json"), init,
        "--layers=-1", "--max_seq_length=%d" % MAX_SEQ_LENGTH, "--batch_size=%d" % BATCH_SIZE,
        "--do_lower_case=true"] + extra, full_padding)
    seconds = (first_time(lines, r"Wrote \d+ lines to") -
               first_time(lines, "Done running local_init_op", last=True))
    extract_rates[name] = NUM_DEV / seconds
    with open(output_file) as reader:
      features[name] = np.concatenate([
          np.array([token["layers"][0]["values"] for token in json.loads(line)["features"]])
          for line in reader])
  rows.append(("extract_features, examples/s", extract_rates))
  extract_difference = np.abs(features["original"] - features["fast"]).max()

  rate = bf16_matmul_rate()
  fast_gflops = train_rates["fast"] * train_flops_per_example(lengths) / 1e9
  notes.append("sentence pairs: %.1f of %d positions on average" % (mean_length, MAX_SEQ_LENGTH))
  notes.append("prediction, fast against original (same checkpoint): probabilities differ by "
               "at most %.4f, same argmax for %.1f%%" %
               (max_difference, 100 * agreement))
  notes.append("extract_features, fast against original: last-layer values differ by at "
               "most %.4f" %
               extract_difference)
  notes.append("default flags against the original (trimming alone): probabilities differ by "
               "at most %.1e, last-layer values by %.1e" % (
                   np.abs(predictions["original"] - predictions["default"]).max(),
                   np.abs(features["original"] - features["default"]).max()))
  notes.append("bfloat16 2048x2048 matmul: %.0f GFLOP/s; fast-path fine-tuning does %.0f "
               "GFLOP/s of useful matmul work (%.0f%%)" % (rate, fast_gflops,
                                                           100 * fast_gflops / rate))

  print("| | original: fp32, full padding | default flags: fp32, batches cut | fast: %s |"
        % " ".join(FAST_FLAGS))
  print("| --- | ---: | ---: | ---: |")
  for label, values in rows:
    cells = ["%.1f" % values[name] for name, _, _ in PATHS]
    if "accuracy" not in label:
      cells[1:] = ["%s (%.2fx)" % (cell, values[name] / values["original"])
                   for cell, (name, _, _) in zip(cells[1:], PATHS[1:])]
    print("| %s | %s |" % (label, " | ".join(cells)))
  for note in notes:
    print("- " + note)


if __name__ == "__main__":
  main()
