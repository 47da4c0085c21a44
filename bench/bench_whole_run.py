"""Fine-tuning as a user waits for it: one run_classifier.py command that trains, evaluates and
predicts, the original's computation against the README's fast flags.

The real 6-layer, 384-wide MiniLM (converted with convert_hf_checkpoint.hf_to_original), the
generated paraphrase task of bench_fast_path.py (1,400 training pairs filling about half of
max_seq_length=128, 400 dev and 400 test pairs), batches of 32, 2 epochs (87 steps), and the
scripts' other defaults. Each round runs, one after the other, in fresh processes:

  original  the scripts computing as the original code does: float32, every batch padded to
            max_seq_length (RunOptions.trims_padding patched to False);
  fast      the README's flags, --precision=bf16 --use_xla --batch_by_length (on a machine
            without GPU the scripts then run without XLA: precision.xla_pays);
  fast_xla  the same with TF_XLA_FLAGS=precision.CPU_XLA_FLAGS set by hand, which makes XLA
            compile on CPU too: what it would cost and gain there.

For each: the wall time of the whole command, where it goes (from the scripts' own log lines,
stamped by the wrapper of bench_fast_path.py), the training examples/s after the first 24
steps (the runner's global_step/sec lines, every 8 steps) and the dev accuracy. Ratios compare
runs of the same round; the range over the rounds is printed. Takes about 14 minutes on a
2-core CPU. Usage: .venv/bin/python bench/bench_whole_run.py
"""

import os
import re
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "bench")]

import bench_fast_path  # pylint: disable=wrong-import-position
import precision  # pylint: disable=wrong-import-position

ROUNDS = 3
NUM_TRAIN, NUM_DEV, NUM_TEST = 1400, 400, 400
BATCH_SIZE = 32
EPOCHS = 2
TRAIN_STEPS = int(NUM_TRAIN / BATCH_SIZE * EPOCHS)
LOG_EVERY_STEPS = 8
WARM_UP_WINDOWS = 3  # of LOG_EVERY_STEPS steps
FAST_FLAGS = ["--precision=bf16", "--use_xla=true", "--batch_by_length=true"]
# (name, extra flags, whether the script computes as the original did, environment)
PATHS = (("original", [], True, {}),
         ("fast", FAST_FLAGS, False, {}),
         ("fast_xla", FAST_FLAGS, False, {"TF_XLA_FLAGS": precision.CPU_XLA_FLAGS}))

# Each phase ends at the first log line matching its pattern, after the previous phase's end
# (None: the end of the process); the first starts when the process is started.
PHASES = (
    ("start-up: Python, TensorFlow, flags, vocabulary", r"Writing example 0 of %d" % NUM_TRAIN),
    ("input conversion: train.tf_record", r"\*\*\*\*\* Running training"),
    ("graph, session, --init_checkpoint", r"before saving checkpoint 0\."),
    ("checkpoint of step 0", r"after saving checkpoint 0\."),
    ("training steps, compiles included", r"before saving checkpoint %d\." % TRAIN_STEPS),
    ("final checkpoint", r"after saving checkpoint %d\." % TRAIN_STEPS),
    ("evaluation: conversion, graph, %d pairs" % NUM_DEV, r"\*\*\*\*\* Running prediction"),
    ("prediction: conversion, graph, %d pairs, writing" % NUM_TEST, None),
)


def phase_seconds(lines, started, ended):
  """The seconds of each of PHASES in a run's stamped log lines."""
  seconds, previous, index = [], started, 0
  for _, pattern in PHASES:
    if pattern is None:
      end = ended
    else:
      while not re.search(pattern, lines[index][1]):
        index += 1
      end = lines[index][0]
    seconds.append(end - previous)
    previous = end
  return seconds


def steady_examples_per_second(lines):
  """Examples/s over the step-rate windows after the first WARM_UP_WINDOWS."""
  rates = [float(re.search(r"global_step/sec: (\S+)", message).group(1))
           for _, message in lines if "global_step/sec" in message][WARM_UP_WINDOWS:]
  return BATCH_SIZE * len(rates) / sum(1 / rate for rate in rates)


def run_once(name, extra, as_original, env, common, work, round_index):
  """Runs one whole fine-tuning; returns {"wall", "phases", "steady", "accuracy"}."""
  output_dir = os.path.join(work, "%s_%d" % (name, round_index))
  started = time.time()
  lines = bench_fast_path.run("run_classifier", common + extra + [
      "--output_dir=" + output_dir], as_original, env_overrides=env)
  ended = time.time()
  with open(os.path.join(output_dir, "eval_results.txt")) as reader:
    accuracy = float(re.search(r"eval_accuracy = (\S+)", reader.read()).group(1))
  return dict(wall=ended - started, phases=phase_seconds(lines, started, ended),
              steady=steady_examples_per_second(lines), accuracy=accuracy)


def measure(work):
  """Runs each path's whole command ROUNDS times in `work`; prints the table and ratios."""
  model_dir, data_dir, (mean_length, _) = bench_fast_path.make_model_and_task(
      work, NUM_TRAIN, NUM_DEV, NUM_TEST)
  common = bench_fast_path.task_flags(model_dir, data_dir) + [
      "--init_checkpoint=" + os.path.join(model_dir, "bert_model.ckpt"),
      "--do_train=true", "--do_eval=true", "--do_predict=true",
      "--train_batch_size=%d" % BATCH_SIZE, "--learning_rate=5e-5",
      "--num_train_epochs=%d" % EPOCHS, "--iterations_per_loop=%d" % LOG_EVERY_STEPS]

  results = {name: [] for name, _, _, _ in PATHS}
  for round_index in range(ROUNDS):
    for name, extra, as_original, env in PATHS:
      result = run_once(name, extra, as_original, env, common, work, round_index)
      results[name].append(result)
      print("round %d %-9s wall %6.1f s, steady %5.1f examples/s, dev accuracy %.4f" % (
          round_index + 1, name, result["wall"], result["steady"], result["accuracy"]),
            flush=True)

  names = [name for name, _, _, _ in PATHS]
  print("\nsentence pairs: %.1f of %d positions on average; %d training steps of %d; "
        "%d rounds, mean (min-max)\n" % (mean_length, bench_fast_path.MAX_SEQ_LENGTH,
                                         TRAIN_STEPS, BATCH_SIZE, ROUNDS))
  print("| seconds | " + " | ".join(names) + " |")
  print("| --- |" + " ---: |" * len(names))
  for index, (label, _) in enumerate(PHASES):
    print("| %s | %s |" % (label, " | ".join(
        "%.1f" % statistics.mean(r["phases"][index] for r in results[name]) for name in names)))
  print("| **whole run** | %s |" % " | ".join(
      "**%.1f**" % statistics.mean(r["wall"] for r in results[name]) for name in names))
  print()
  for name in names[1:]:
    whole = [o["wall"] / r["wall"] for o, r in zip(results["original"], results[name])]
    steady = [r["steady"] / o["steady"] for o, r in zip(results["original"], results[name])]
    print("- %s against original: whole run %sx, steady steps %sx" % (
        name, bench_fast_path.spread(whole), bench_fast_path.spread(steady)))
  for name in names:
    print("- %s: steady training %s examples/s, dev accuracy %s" % (
        name, bench_fast_path.spread([r["steady"] for r in results[name]], "%.1f"),
        bench_fast_path.spread([r["accuracy"] for r in results[name]], "%.4f")))


def main():
  # The checkpoints and records (gigabytes for some benchmarks) go when it ends or fails.
  with tempfile.TemporaryDirectory(prefix="bench_whole_run_") as work:
    measure(work)


if __name__ == "__main__":
  main()
