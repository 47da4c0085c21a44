"""Benchmark: latency of one classification request, Estimator.predict against the SavedModel.

A request is one sentence pair of the fixture MRPC test set, raw text in, probabilities out.
The baseline is how users of the original served: the script's estimator (TPUEstimator off TPU
then; `runner.Runner` from `estimator_setup.make_estimator` now) with the checkpoint as
--init_checkpoint, and one `predict` call per request, which builds the graph, starts a session
and restores the checkpoint every time. Ours is the model exported by
--export_dir (serving.export_saved_model), loaded once by `run_classifier.ClassifierPredictor`.
Both convert the text the same way (FullTokenizer, convert_single_example), run in the same
process, interleaved request by request, after one warm-up request each; every pair of answers
is checked to agree to 1e-5.

Models: the fixture's fine-tuned classifier (2 layers, hidden 64, max_seq_length 64), and the
real pretrained 6-layer 384-wide MiniLM of the tests with a random 2-label head
(max_seq_length 128).

Run from the repository root:  .venv/bin/python bench/bench_serving.py
"""

import csv
import os
import statistics
import sys
import tempfile
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO_DIR, os.path.join(REPO_DIR, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position

import convert_hf_checkpoint  # pylint: disable=wrong-import-position
import estimator_setup  # pylint: disable=wrong-import-position
import modeling  # pylint: disable=wrong-import-position
import run_classifier  # pylint: disable=wrong-import-position
import serving  # pylint: disable=wrong-import-position
import support  # pylint: disable=wrong-import-position
import tokenization  # pylint: disable=wrong-import-position

LABELS = ["0", "1"]


def mrpc_test_pairs():
  """The (text_a, text_b) pairs of the fixture MRPC test.tsv."""
  with open(support.fixture_path("classifier", "data", "test.tsv")) as reader:
    rows = list(csv.reader(reader, delimiter="\t", quotechar=None))[1:]
  return [(row[3], row[4]) for row in rows]


def with_random_head(bert_config, pretrained_checkpoint, checkpoint_path):
  """Saves the pretrained encoder plus a randomly initialised 2-label head as a checkpoint."""
  with tf.Graph().as_default():
    ids = tf.zeros([1, 8], dtype=tf.int32)
    run_classifier.create_model(bert_config, False, ids, ids, ids, tf.zeros([1], tf.int32),
                                len(LABELS), False)
    assignment_map, _ = modeling.get_assignment_map_from_checkpoint(
        tf.trainable_variables(), pretrained_checkpoint)
    tf.train.init_from_checkpoint(pretrained_checkpoint, assignment_map)
    with tf.Session() as session:
      session.run(tf.global_variables_initializer())
      tf.train.Saver().save(session, checkpoint_path)


class EstimatorPerRequest(object):
  """Serves each request with its own predict call of the script's estimator, as the original's
  users did with Estimator.predict."""

  def __init__(self, bert_config, checkpoint, vocab_file, max_seq_length, model_dir):
    model_fn = run_classifier.model_fn_builder(
        bert_config=bert_config, num_labels=len(LABELS), init_checkpoint=checkpoint,
        learning_rate=5e-5, num_train_steps=None, num_warmup_steps=None, use_tpu=False,
        use_one_hot_embeddings=False)
    self._estimator = estimator_setup.make_estimator(
        model_fn, model_dir, estimator_setup.RunOptions(), predict_batch_size=1)
    self._tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    self._max_seq_length = max_seq_length

  def predict(self, text_a, text_b):
    example = run_classifier.InputExample("request", text_a, text_b, LABELS[0])
    feature = run_classifier.convert_single_example(
        5, example, LABELS, self._max_seq_length, self._tokenizer)
    input_fn = run_classifier.input_fn_builder(
        [feature], self._max_seq_length, is_training=False, drop_remainder=False)
    result, = list(self._estimator.predict(input_fn))
    return [float(p) for p in result["probabilities"]]


def bench(name, bert_config, checkpoint, vocab_file, max_seq_length, num_requests, work_dir):
  """Times both ways on the same requests; prints median and p90 ms and the ratio."""
  export_dir = os.path.join(work_dir, name + "-export")
  export_model_fn = run_classifier.model_fn_builder(
      bert_config=bert_config, num_labels=len(LABELS), init_checkpoint=None,
      learning_rate=5e-5, num_train_steps=None, num_warmup_steps=None, use_tpu=False,
      use_one_hot_embeddings=False)
  serving.export_saved_model(
      export_model_fn, checkpoint, export_dir, max_seq_length, vocab_file,
      settings={"exported_by": "run_classifier.py", "task_name": "mrpc", "labels": LABELS,
                "do_lower_case": True})
  ours = run_classifier.ClassifierPredictor(export_dir)
  baseline = EstimatorPerRequest(bert_config, checkpoint, vocab_file, max_seq_length,
                                 os.path.join(work_dir, name + "-model_dir"))

  pairs = mrpc_test_pairs()
  ours.predict(*pairs[-1])
  baseline.predict(*pairs[-1])
  milliseconds = {"Estimator.predict per request": [], "SavedModel predictor": []}
  for index in range(num_requests):
    pair = pairs[index % len(pairs)]
    start = time.perf_counter()
    expected = baseline.predict(*pair)
    middle = time.perf_counter()
    probabilities = ours.predict(*pair)
    end = time.perf_counter()
    if not np.allclose(probabilities, expected, rtol=1e-5, atol=1e-6):
      sys.exit("%s: answers differ on request %d: %s vs %s" %
               (name, index, probabilities, expected))
    milliseconds["Estimator.predict per request"].append(1000 * (middle - start))
    milliseconds["SavedModel predictor"].append(1000 * (end - middle))

  print("\n%s (layers %d, hidden %d, max_seq_length %d), %d single-example requests after one "
        "warm-up each:" % (name, bert_config.num_hidden_layers, bert_config.hidden_size,
                           max_seq_length, num_requests))
  medians = {}
  for who, values in milliseconds.items():
    medians[who] = statistics.median(values)
    print("  %-31s median %9.2f ms   p90 %9.2f ms" %
          (who, medians[who], np.percentile(values, 90)))
  print("  ratio of medians: %.0fx" %
        (medians["Estimator.predict per request"] / medians["SavedModel predictor"]))


def main():
  tf.logging.set_verbosity(tf.logging.ERROR)
  with tempfile.TemporaryDirectory() as work_dir:
    bench("fixture classifier",
          modeling.BertConfig.from_json_file(support.fixture_path("modeling", "bert_config.json")),
          support.fixture_path("classifier", "finetuned.ckpt"), support.VOCAB_FILE, 64, 30,
          work_dir)

    minilm_dir = os.path.join(work_dir, "minilm")
    convert_hf_checkpoint.hf_to_original(support.real_model_dir(), minilm_dir)
    bert_config = modeling.BertConfig.from_json_file(os.path.join(minilm_dir, "bert_config.json"))
    checkpoint = os.path.join(work_dir, "minilm-classifier", "model.ckpt")
    with_random_head(bert_config, os.path.join(minilm_dir, "bert_model.ckpt"), checkpoint)
    bench("MiniLM, random head", bert_config, checkpoint,
          os.path.join(minilm_dir, "vocab.txt"), 128, 15, work_dir)


if __name__ == "__main__":
  main()
