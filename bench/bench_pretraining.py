"""Pre-training speed: run_pretraining.py computing as the original against the fast path.

Data: create_pretraining_data.py on the Python documentation bundled with Python (the corpus of
bench_create_pretraining_data.py), the real 30,522-entry uncased vocabulary, max_seq_length 128,
20 predictions per sequence. Two models, trained from scratch with run_pretraining.py, batches
of 32, TRAIN_STEPS steps, then evaluated on EVAL_STEPS batches:

  small    2 layers, 128 wide, 2 heads, feed-forward 512 (the size of BERT-Tiny);
  minilm   6 layers, 384 wide, 12 heads, feed-forward 1536 (the size of MiniLM-L6).

Paths, each in fresh processes, one after the other in every round:

  original  the scripts computing as the original code does: float32, every batch padded
            (RunOptions.trims_padding patched to False);
  fast      the README's flags, --precision=bf16 --use_xla --batch_by_length (on a machine
            without GPU the scripts then run without XLA: precision.xla_pays);
  fast_xla  the same with TF_XLA_FLAGS=precision.CPU_XLA_FLAGS set by hand, which makes XLA
            compile on CPU too.

Printed: sequences/s in steady state (the runner's global_step/sec lines every 8 steps, after
the first 24 steps) and over the whole run (process start to end, training and evaluation
included), the ratios to the original within each round, with the range over the rounds, and
the evaluation's masked-LM and next-sentence accuracy. Takes about 18 minutes on a 2-core CPU.
Usage: .venv/bin/python bench/bench_pretraining.py
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), os.path.join(REPO, "bench")]

import bench_create_pretraining_data  # pylint: disable=wrong-import-position
import bench_fast_path  # pylint: disable=wrong-import-position
import precision  # pylint: disable=wrong-import-position
import support  # pylint: disable=wrong-import-position

ROUNDS = 3
BATCH_SIZE = 32
TRAIN_STEPS = 64
EVAL_STEPS = 10
LOG_EVERY_STEPS = 8
WARM_UP_WINDOWS = 3  # of LOG_EVERY_STEPS steps
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS = 20
CONFIGS = {
    "small": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=512),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536),
}
FAST_FLAGS = ["--precision=bf16", "--use_xla=true", "--batch_by_length=true"]
# (name, extra flags, whether the script computes as the original did, environment)
PATHS = (("original", [], True, {}),
         ("fast", FAST_FLAGS, False, {}),
         ("fast_xla", FAST_FLAGS, False, {"TF_XLA_FLAGS": precision.CPU_XLA_FLAGS}))


def make_data(work):
  """Writes the pre-training TFRecords; returns their path."""
  corpus = os.path.join(work, "corpus.txt")
  bench_create_pretraining_data.build_corpus(corpus, copies=1)
  records = os.path.join(work, "pretraining.tfrecord")
  subprocess.run([sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
                  "--input_file=" + corpus, "--output_file=" + records,
                  "--vocab_file=" + support.VOCAB_FILE, "--do_lower_case=true",
                  "--max_seq_length=%d" % MAX_SEQ_LENGTH,
                  "--max_predictions_per_seq=%d" % MAX_PREDICTIONS, "--dupe_factor=2"],
                 check=True, capture_output=True)
  return records


def write_config(work, name):
  """Writes the bert_config.json of CONFIGS[name]; returns its path."""
  config = dict(vocab_size=30522, hidden_act="gelu", hidden_dropout_prob=0.1,
                attention_probs_dropout_prob=0.1, max_position_embeddings=512,
                type_vocab_size=2, initializer_range=0.02, **CONFIGS[name])
  path = os.path.join(work, name + "_config.json")
  with open(path, "w") as writer:
    json.dump(config, writer)
  return path


def run_once(config_file, records, output_dir, extra, as_original, env):
  """Trains and evaluates; returns {"wall", "steady", "masked_lm", "next_sentence"}."""
  started = time.time()
  lines = bench_fast_path.run("run_pretraining", [
      "--bert_config_file=" + config_file, "--input_file=" + records,
      "--output_dir=" + output_dir, "--do_train=true", "--do_eval=true",
      "--train_batch_size=%d" % BATCH_SIZE, "--eval_batch_size=%d" % BATCH_SIZE,
      "--max_seq_length=%d" % MAX_SEQ_LENGTH, "--max_predictions_per_seq=%d" % MAX_PREDICTIONS,
      "--num_train_steps=%d" % TRAIN_STEPS, "--num_warmup_steps=10", "--learning_rate=1e-4",
      "--max_eval_steps=%d" % EVAL_STEPS, "--iterations_per_loop=%d" % LOG_EVERY_STEPS] + extra,
                              as_original, env_overrides=env)
  wall = time.time() - started
  rates = [float(re.search(r"global_step/sec: (\S+)", message).group(1))
           for _, message in lines if "global_step/sec" in message][WARM_UP_WINDOWS:]
  with open(os.path.join(output_dir, "eval_results.txt")) as reader:
    results = dict(line.split(" = ") for line in reader.read().splitlines())
  return dict(wall=wall, steady=BATCH_SIZE * len(rates) / sum(1 / rate for rate in rates),
              whole=BATCH_SIZE * TRAIN_STEPS / wall,
              masked_lm=float(results["masked_lm_accuracy"]),
              next_sentence=float(results["next_sentence_accuracy"]))


def measure(work):
  """Pre-trains each config with each path ROUNDS times in `work`; prints the tables."""
  records = make_data(work)
  names = [name for name, _, _, _ in PATHS]
  for config_name in CONFIGS:
    config_file = write_config(work, config_name)
    results = {name: [] for name in names}
    for round_index in range(ROUNDS):
      for name, extra, as_original, env in PATHS:
        output_dir = os.path.join(work, "%s_%s_%d" % (config_name, name, round_index))
        result = run_once(config_file, records, output_dir, extra, as_original, env)
        results[name].append(result)
        print("%s round %d %-10s steady %6.1f sequences/s, whole run %6.1f (%.0f s), masked LM "
              "accuracy %.4f" % (config_name, round_index + 1, name, result["steady"],
                                 result["whole"], result["wall"], result["masked_lm"]),
              flush=True)
    print("\n%s: %d steps of %d sequences of %d, %d rounds, mean (min-max)" % (
        config_name, TRAIN_STEPS, BATCH_SIZE, MAX_SEQ_LENGTH, ROUNDS))
    print("| | " + " | ".join(names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for key, label, form in (("steady", "sequences/s, steady", "%.1f"),
                             ("whole", "sequences/s, whole run", "%.1f"),
                             ("masked_lm", "masked LM accuracy", "%.4f"),
                             ("next_sentence", "next sentence accuracy", "%.4f")):
      print("| %s | %s |" % (label, " | ".join(
          bench_fast_path.spread([r[key] for r in results[name]], form) for name in names)))
    for name in names[1:]:
      for key in ("steady", "whole"):
        ratios = [r[key] / o[key] for o, r in zip(results["original"], results[name])]
        print("- %s against original, %s: %sx" % (name, key, bench_fast_path.spread(ratios)))
    print(flush=True)


def main():
  # The checkpoints and records (gigabytes for some benchmarks) go when it ends or fails.
  with tempfile.TemporaryDirectory(prefix="bench_pretraining_") as work:
    measure(work)


if __name__ == "__main__":
  main()
