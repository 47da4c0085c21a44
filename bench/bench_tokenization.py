"""Benchmark: FullTokenizer.tokenize, Google's original (bert-tensorflow 1.0.4) against ours.

Text: Python's bundled documentation (pydoc_data.topics.topics, all values joined with "\\n",
about 0.47 MB, mostly ASCII with some typographic Unicode). Vocabulary: the real 30,522-entry
uncased one of tests/fixtures. Both tokenizers run in the same process, interleaved, so the
ratio holds on a busy machine. Ours starts each repeat from a new tokenizer, with an empty word
cache, so the figures include filling it. Every output is checked to be identical.

Run from the repository root:  .venv/bin/python bench/bench_tokenization.py
"""

import os
import statistics
import sys
import time
import types

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO_DIR, os.path.join(REPO_DIR, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=wrong-import-position
from pydoc_data.topics import topics  # pylint: disable=wrong-import-position

import support  # pylint: disable=wrong-import-position
import tokenization  # pylint: disable=wrong-import-position

REPEATS = 5


def load_original():
  """Imports the original module, patched for TF2 and for the absl flag nothing parses here."""
  if not hasattr(tf, "gfile"):
    tf.gfile = tf.compat.v1.gfile
  from bert import tokenization as original  # pylint: disable=import-outside-toplevel
  original.FLAGS = types.SimpleNamespace(preserve_unused_tokens=False)
  return original


def timed(function, argument):
  """Returns (seconds, result) of function(argument)."""
  start = time.perf_counter()
  result = function(argument)
  return time.perf_counter() - start, result


def tokenize_lines(tokenizer, lines):
  """Tokenizes line by line, as the scripts read their input; returns all tokens."""
  tokens = []
  for line in lines:
    tokens.extend(tokenizer.tokenize(line))
  return tokens


def main():
  original = load_original()
  text = "\n".join(topics.values())
  lines = text.split("\n")
  megabytes = len(text.encode("utf-8")) / 1e6
  baseline = original.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)

  cases = {
      "whole text": lambda tokenizer: tokenizer.tokenize(text),
      "line by line": lambda tokenizer: tokenize_lines(tokenizer, lines),
  }
  seconds = {(case, who): [] for case in cases for who in ("original", "ours")}
  token_counts = {}
  for _ in range(REPEATS):
    for case, run in cases.items():
      ours = tokenization.FullTokenizer(support.VOCAB_FILE, do_lower_case=True)
      original_seconds, expected = timed(run, baseline)
      our_seconds, tokens = timed(run, ours)
      if tokens != expected:
        sys.exit("Outputs differ on %s: %d tokens vs the original's %d"
                 % (case, len(tokens), len(expected)))
      seconds[case, "original"].append(original_seconds)
      seconds[case, "ours"].append(our_seconds)
      token_counts[case] = len(tokens)

  print("FullTokenizer.tokenize, uncased, on pydoc_data.topics (%.2f MB, %d lines), "
        "median of %d runs, Python %s" % (megabytes, len(lines), REPEATS, sys.version.split()[0]))
  print("%-14s %-10s %9s %12s %7s" % ("input", "tokenizer", "MB/s", "tokens/s", "ratio"))
  for case in cases:
    baseline_median = statistics.median(seconds[case, "original"])
    for who in ("original", "ours"):
      median = statistics.median(seconds[case, who])
      print("%-14s %-10s %9.2f %12s %6.1fx" % (
          case, who, megabytes / median, "{:,.0f}".format(token_counts[case] / median),
          baseline_median / median))
  print("Outputs identical: yes (%d tokens per pass)" % token_counts["whole text"])


if __name__ == "__main__":
  main()
