"""Benchmark: the original create_pretraining_data pipeline against ours, on the same input.

Builds a corpus of a few MB from the Python documentation bundled with Python
(`pydoc_data.topics`: one sentence per line, a blank line between documents) in a temporary
folder, then runs, each in a child process of its own, the original package's pipeline
(`bert.create_pretraining_data.create_training_instances` and
`write_instance_to_example_files`, as its main does) and our script's `main`, with the same
flags. Prints seconds, input MB/s and peak memory for both, the speed ratio, and whether the
two output files are byte-identical.

Usage (from the project root):
  .venv/bin/python bench/bench_create_pretraining_data.py [--copies=7] [--dupe_factor=10]
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB_FILE = os.path.join(REPO_DIR, "tests", "fixtures", "vocab", "uncased_vocab.txt")


def build_corpus(path, copies):
  """Writes every pydoc topic `copies` times, one document per topic, one sentence per line.

  Each copy starts at another topic, so that the copies are not all next to each other.
  """
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  names = sorted(topics.topics)
  documents = []
  for copy in range(copies):
    shift = copy * 11 % len(names)
    for name in names[shift:] + names[:shift]:
      sentences = re.split(r"(?<=[.!?:])\s+(?=[A-Z])", topics.topics[name])
      lines = [" ".join(sentence.split()) for sentence in sentences]
      documents.append("\n".join(line for line in lines if line))
  with open(path, "w", encoding="utf-8") as corpus:
    corpus.write("\n\n".join(documents) + "\n")


def _current_rss_mib():
  with open("/proc/self/statm") as statm:
    return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_original(args):
  """The original's main, minus flag parsing: tokenizer, instances, files."""
  import random  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from bert import create_pretraining_data  # pylint: disable=import-outside-toplevel
  from bert import tokenization  # pylint: disable=import-outside-toplevel
  flags.FLAGS(["original"])  # Its tokenizer reads the --preserve_unused_tokens default.
  create_pretraining_data.tf.logging.set_verbosity(create_pretraining_data.tf.logging.INFO)

  def pipeline():
    tokenizer = tokenization.FullTokenizer(vocab_file=VOCAB_FILE, do_lower_case=True)
    rng = random.Random(args.random_seed)
    instances = create_pretraining_data.create_training_instances(
        [args.input_file], tokenizer, args.max_seq_length, args.dupe_factor, 0.1, 0.15,
        args.max_predictions_per_seq, rng)
    create_pretraining_data.write_instance_to_example_files(
        instances, tokenizer, args.max_seq_length, args.max_predictions_per_seq,
        [args.output_file])

  return measure(pipeline)


def run_ours(args):
  """Our script's main, with the same flags."""
  sys.path.insert(0, REPO_DIR)
  from absl import flags  # pylint: disable=import-outside-toplevel
  import create_pretraining_data  # pylint: disable=import-outside-toplevel
  flags.FLAGS([
      "create_pretraining_data", "--input_file=" + args.input_file,
      "--output_file=" + args.output_file, "--vocab_file=" + VOCAB_FILE,
      "--max_seq_length=%d" % args.max_seq_length,
      "--max_predictions_per_seq=%d" % args.max_predictions_per_seq,
      "--random_seed=%d" % args.random_seed, "--dupe_factor=%d" % args.dupe_factor])
  return measure(lambda: create_pretraining_data.main([]))


def _cpu_seconds():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def measure(pipeline):
  """Runs `pipeline` once; returns wall and CPU seconds, peak RSS and its growth in the run.

  The CPU time is the steadier figure on a machine that other work shares.
  """
  rss_before = _current_rss_mib()
  cpu_start = _cpu_seconds()
  start = time.perf_counter()
  pipeline()
  seconds = time.perf_counter() - start
  cpu_seconds = _cpu_seconds() - cpu_start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak,
          "peak_growth_mib": peak - rss_before}


def run_child(side, args, input_file, output_file):
  command = [sys.executable, os.path.abspath(__file__), "--child=" + side,
             "--input_file=" + input_file, "--output_file=" + output_file,
             "--dupe_factor=%d" % args.dupe_factor, "--max_seq_length=%d" % args.max_seq_length,
             "--max_predictions_per_seq=%d" % args.max_predictions_per_seq,
             "--random_seed=%d" % args.random_seed]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--copies", type=int, default=7,
                      help="copies of the pydoc topics in the corpus (about 0.43 MB each)")
  parser.add_argument("--dupe_factor", type=int, default=10)
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--max_predictions_per_seq", type=int, default=20)
  parser.add_argument("--random_seed", type=int, default=12345)
  parser.add_argument("--child", choices=("original", "ours"), help=argparse.SUPPRESS)
  parser.add_argument("--input_file", help=argparse.SUPPRESS)
  parser.add_argument("--output_file", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(run_original(args) if args.child == "original" else run_ours(args)))
    return

  with tempfile.TemporaryDirectory() as temp_dir:
    corpus = os.path.join(temp_dir, "corpus.txt")
    build_corpus(corpus, args.copies)
    megabytes = os.path.getsize(corpus) / 1e6
    print("corpus: %.2f MB, %d lines; flags: --dupe_factor=%d --max_seq_length=%d "
          "--max_predictions_per_seq=%d --random_seed=%d" %
          (megabytes, sum(1 for _ in open(corpus, encoding="utf-8")), args.dupe_factor,
           args.max_seq_length, args.max_predictions_per_seq, args.random_seed))
    outputs = {side: os.path.join(temp_dir, side + ".tfrecord") for side in ("original", "ours")}
    results = {side: run_child(side, args, corpus, outputs[side]) for side in outputs}
    print("%-9s %8s %8s %8s %12s %15s %18s" % (
        "pipeline", "seconds", "MB/s", "CPU s", "MB/CPU s", "peak RSS (MiB)",
        "peak growth (MiB)"))
    for side, result in results.items():
      print("%-9s %8.2f %8.3f %8.2f %12.3f %15.0f %18.0f" % (
          side, result["seconds"], megabytes / result["seconds"], result["cpu_seconds"],
          megabytes / result["cpu_seconds"], result["peak_rss_mib"],
          result["peak_growth_mib"]))
    original, ours = results["original"], results["ours"]
    print("speed-up: %.2fx (wall), %.2fx (CPU); peak memory growth: %.2fx less" % (
        original["seconds"] / ours["seconds"], original["cpu_seconds"] / ours["cpu_seconds"],
        original["peak_growth_mib"] / ours["peak_growth_mib"]))
    with open(outputs["original"], "rb") as original, open(outputs["ours"], "rb") as ours:
      identical = original.read() == ours.read()
    print("outputs (%.1f MB) byte-identical: %s" % (os.path.getsize(outputs["ours"]) / 1e6,
                                                     identical))
    if not identical:
      sys.exit(1)


if __name__ == "__main__":
  main()
