"""Benchmark: BERT fine-tuning and inference, the original float32 path against the fast ones.

Model: 6 layers, hidden 384, 12 heads, intermediate 1536, vocabulary 30,522 (the size of the
real MiniLM-L6 BERT), random weights, plus run_classifier's head (dropout 0.1 on the pooled
output, 2 labels). Batches of 32 at max_seq_length 128. Training runs forward, backward and
`optimization.create_optimizer` (AdamWeightDecay, clipping) in a session, as the Estimator does.

Inputs: 4,096 sentence pairs of seeded random WordPieces, [CLS] A [SEP] B [SEP] with each
sentence's length drawn from a log-normal distribution (median 27 WordPieces): about 62 of 128
positions are real on average, as in a GLUE sentence-pair task. The batches are made by the
tf.data functions of input_pipeline.py that the scripts' --batch_by_length uses:
  full padding   every batch [32, 128] (what the scripts do today);
  trimmed        each batch of 32 consecutive examples cut to its longest sequence (rounded up
                 to a multiple of 16: few shapes for XLA to compile);
  bucketed       training: examples grouped by length in buckets of 16 positions, each batch
                 cut to its bucket's bound (`bucket_by_length`);
  sorted         inference: examples sorted by length within windows of 32 batches, each batch
                 cut to its longest sequence rounded up to a multiple of 8
                 (`batch_sorted_by_length`), order restorable.

Precision: float32 (the original graph) or bfloat16 (`BertModel(compute_type=tf.bfloat16)`:
float32 variables, bfloat16 matrix multiplications on AMX through oneDNN).
XLA: the session's global_jit_level ON_1 with TF_XLA_FLAGS="--tf_xla_cpu_global_jit
--tf_xla_ops_to_cluster=FUSIBLE": XLA fuses the element-wise ops and reductions (GELU, layer
norm, dropout masks, softmax, Adam updates) and leaves the matrix multiplications to oneDNN
(XLA's own CPU dot has no AMX: bfloat16 would run at float32 speed). It pays in training. In
prediction, without gradients, grappler already fuses bias and GELU into oneDNN's matmul and
XLA made no steady difference here (between -12% and +6% from run to run), so prediction's
fast path is without XLA and compiles nothing.

Timing: every configuration gets its own graph and session, all built first; then the
configurations take turns for a few rounds, so that every ratio compares figures measured side
by side on a machine shared with other work. A configuration runs one step per batch shape per
round (shapes first run, compiled and cached, before timing), and its examples/s weighs each
shape's median step time by how often the pipeline produces that shape.

FLOPs: the matrix multiplications only, counted exactly per layer for the shape computed:
2 * L * (4 * H^2 + 2 * H * I) for the query, key, value, output and feed-forward projections
and 4 * L^2 * H for the attention scores and their weighted sum, per example of (trimmed)
length L; plus the pooler and the classifier; training is 3 times the forward pass (the
backward pass multiplies twice). "useful" counts each example at its real length only. The
rates are compared with the 2048x2048 matmul rates measured in the same rounds.

Run from the repository root:  .venv/bin/python bench/bench_model_speed.py   (a few minutes)
"""

import collections
import os
import statistics
import sys
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO_DIR]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Read when the first XLA session starts; sessions without a jit level are not affected.
os.environ["TF_XLA_FLAGS"] = " ".join([os.environ.get("TF_XLA_FLAGS", ""),
                                       "--tf_xla_cpu_global_jit",
                                       "--tf_xla_ops_to_cluster=FUSIBLE"]).strip()

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow.compat.v1 as tf  # pylint: disable=wrong-import-position

import input_pipeline  # pylint: disable=wrong-import-position
import modeling  # pylint: disable=wrong-import-position
import optimization  # pylint: disable=wrong-import-position

CONFIG = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)
NUM_LABELS = 2
BATCH_SIZE = 32
MAX_SEQ_LENGTH = 128
NUM_EXAMPLES = 4096
LENGTH_MULTIPLE = 16
PREDICT_LENGTH_MULTIPLE = 8
SORT_WINDOW_BATCHES = 32
MATMUL_SIZE = 2048
ROUNDS = 3

# (name, training, compute type, batching, XLA); the first of each kind is the baseline.
CONFIGURATIONS = [
    ("float32, full padding (original)", True, tf.float32, "full", False),
    ("float32, full padding, XLA", True, tf.float32, "full", True),
    ("bfloat16, full padding", True, tf.bfloat16, "full", False),
    ("bfloat16, full padding, XLA", True, tf.bfloat16, "full", True),
    ("bfloat16, trimmed, XLA", True, tf.bfloat16, "trimmed", True),
    ("bfloat16, bucketed", True, tf.bfloat16, "bucketed", False),
    ("bfloat16, bucketed, XLA (fast path)", True, tf.bfloat16, "bucketed", True),
    ("float32, full padding (original)", False, tf.float32, "full", False),
    ("bfloat16, full padding, XLA", False, tf.bfloat16, "full", True),
    ("bfloat16, sorted (fast path)", False, tf.bfloat16, "sorted", False),
    ("bfloat16, sorted, XLA", False, tf.bfloat16, "sorted", True),
]


def sentence_pair_examples(rng):
  """Returns numpy features of NUM_EXAMPLES padded sentence pairs, [NUM_EXAMPLES, 128]."""
  lengths_a, lengths_b = np.maximum(3, np.round(rng.lognormal(np.log(27), 0.45,
                                                              (2, NUM_EXAMPLES))))
  lengths = np.minimum(MAX_SEQ_LENGTH, lengths_a + lengths_b + 3).astype(np.int32)
  positions = np.arange(MAX_SEQ_LENGTH)[None, :]
  input_mask = (positions < lengths[:, None]).astype(np.int32)
  input_ids = rng.randint(1000, CONFIG["vocab_size"], input_mask.shape) * input_mask
  segment_ids = ((positions > lengths_a[:, None] + 1) * input_mask).astype(np.int32)
  return dict(input_ids=input_ids.astype(np.int32), input_mask=input_mask,
              segment_ids=segment_ids,
              label_ids=rng.randint(0, NUM_LABELS, NUM_EXAMPLES).astype(np.int32))


def make_batches(examples, batching):
  """Runs the tf.data pipeline of `batching` over the examples; returns numpy batches."""
  with tf.Graph().as_default():
    dataset = tf.data.Dataset.from_tensor_slices(examples)
    if batching == "bucketed":
      dataset = input_pipeline.bucket_by_length(dataset, BATCH_SIZE, LENGTH_MULTIPLE,
                                               drop_remainder=True)
    elif batching == "sorted":
      dataset = input_pipeline.batch_sorted_by_length(
          dataset, BATCH_SIZE, SORT_WINDOW_BATCHES, PREDICT_LENGTH_MULTIPLE)
    else:
      dataset = dataset.batch(BATCH_SIZE, drop_remainder=True)
      if batching == "trimmed":
        dataset = dataset.map(lambda features: input_pipeline.trim_to_longest_sequence(
            features, LENGTH_MULTIPLE))
    next_batch = tf.data.make_one_shot_iterator(dataset).get_next()
    batches = []
    with tf.Session() as session:
      while True:
        try:
          batches.append(session.run(next_batch))
        except tf.errors.OutOfRangeError:
          return batches


def forward_flops(seq_length, real_lengths=None):
  """Matmul FLOPs of one forward pass of a batch, at `seq_length` or at each real length."""
  hidden, intermediate = CONFIG["hidden_size"], CONFIG["intermediate_size"]
  lengths = (np.full(BATCH_SIZE, seq_length, np.float64) if real_lengths is None
             else real_lengths.astype(np.float64))
  per_layer = (2 * lengths * (4 * hidden * hidden + 2 * hidden * intermediate) +
               4 * lengths * lengths * hidden)
  heads = 2 * hidden * hidden + 2 * hidden * NUM_LABELS
  return float(np.sum(CONFIG["num_hidden_layers"] * per_layer + heads))


class Configuration(object):
  """One model graph and session, and the step times measured for each batch shape."""

  def __init__(self, name, training, compute_type, batching, use_xla, batches):
    self.name, self.training, self.batching = name, training, batching
    self.by_length = collections.defaultdict(list)
    for batch in batches:
      self.by_length[batch["input_ids"].shape[1]].append(batch)
    self.step_times = collections.defaultdict(list)
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.set_random_seed(1)
      self.placeholders = {
          name: tf.placeholder(tf.int32, [BATCH_SIZE, None], name=name)
          for name in input_pipeline.SEQUENCE_FEATURES}
      self.placeholders["label_ids"] = tf.placeholder(tf.int32, [BATCH_SIZE], name="label_ids")
      self.fetch = self._build(compute_type)
      session_config = tf.ConfigProto()
      if use_xla:
        session_config.graph_options.optimizer_options.global_jit_level = (
            tf.OptimizerOptions.ON_1)
      self.session = tf.Session(config=session_config)
      self.session.run(tf.global_variables_initializer())
    start = time.perf_counter()
    for length in self.by_length:
      self.run_step(length, record=False)
    self.first_run_seconds = time.perf_counter() - start

  def _build(self, compute_type):
    """Builds BertModel and the classifier head; returns the train op or the probabilities."""
    model = modeling.BertModel(
        modeling.BertConfig(**CONFIG), self.training, self.placeholders["input_ids"],
        self.placeholders["input_mask"], self.placeholders["segment_ids"],
        compute_type=compute_type)
    output_layer = model.get_pooled_output()
    output_weights = tf.get_variable("output_weights", [NUM_LABELS, CONFIG["hidden_size"]],
                                     initializer=tf.truncated_normal_initializer(stddev=0.02))
    output_bias = tf.get_variable("output_bias", [NUM_LABELS],
                                  initializer=tf.zeros_initializer())
    if self.training:
      output_layer = tf.nn.dropout(output_layer, rate=0.1)
    logits = tf.nn.bias_add(tf.matmul(output_layer, output_weights, transpose_b=True),
                            output_bias)
    if not self.training:
      return tf.nn.softmax(logits)
    one_hot_labels = tf.one_hot(self.placeholders["label_ids"], NUM_LABELS)
    loss = -tf.reduce_mean(tf.reduce_sum(one_hot_labels * tf.nn.log_softmax(logits), -1))
    return optimization.create_optimizer(loss, 2e-5, 1000, 100, False)

  def run_step(self, length, record=True):
    batches = self.by_length[length]
    batch = batches[len(self.step_times[length]) % len(batches)]
    feed_dict = {placeholder: batch[name] for name, placeholder in self.placeholders.items()}
    start = time.perf_counter()
    self.session.run(self.fetch, feed_dict)
    if record:
      self.step_times[length].append(time.perf_counter() - start)

  def seconds_per_batch(self):
    """Median step time per shape, weighted by how often the pipeline gives that shape."""
    total = sum(len(batches) for batches in self.by_length.values())
    return sum(statistics.median(self.step_times[length]) * len(batches) / total
               for length, batches in self.by_length.items())

  def flops_per_batch(self, useful):
    """Mean matmul FLOPs of a batch: computed (trimmed shape) or useful (real lengths)."""
    batches = [batch for batches in self.by_length.values() for batch in batches]
    passes = 3 if self.training else 1
    return passes * statistics.mean(
        forward_flops(batch["input_ids"].shape[1],
                      batch["input_mask"].sum(1) if useful else None) for batch in batches)


def matmul_seconds(session, product):
  start = time.perf_counter()
  session.run(product)
  return time.perf_counter() - start


def main():
  examples = sentence_pair_examples(np.random.RandomState(12345))
  print("%d sentence pairs, %.1f of %d positions real on average; batch %d" %
        (NUM_EXAMPLES, examples["input_mask"].sum(1).mean(), MAX_SEQ_LENGTH, BATCH_SIZE))
  batches = {batching: make_batches(examples, batching)
             for batching in ("full", "trimmed", "bucketed", "sorted")}
  for batching, made in batches.items():
    lengths = [batch["input_ids"].shape[1] for batch in made]
    print("  %-9s %3d batches, mean length %5.1f, %d shapes" %
          (batching, len(made), np.mean(lengths), len(set(lengths))))

  with tf.Graph().as_default():
    operand = tf.Variable(tf.random.normal([MATMUL_SIZE, MATMUL_SIZE]))
    products = {dtype: tf.reduce_sum(tf.cast(tf.matmul(tf.cast(operand, dtype),
                                                       tf.cast(operand, dtype)), tf.float32))
                for dtype in (tf.float32, tf.bfloat16)}
    matmul_session = tf.Session()
    matmul_session.run(tf.global_variables_initializer())
    matmul_session.run(list(products.values()))

  configurations = []
  for name, training, compute_type, batching, use_xla in CONFIGURATIONS:
    configurations.append(Configuration(name, training, compute_type, batching, use_xla,
                                        batches[batching]))
    print("built %-8s %-38s first run of its %d shapes: %5.1f s" %
          ("training" if training else "predict", name, len(configurations[-1].by_length),
           configurations[-1].first_run_seconds), flush=True)

  matmul_times = collections.defaultdict(list)
  for round_index in range(ROUNDS):
    for dtype, product in products.items():
      matmul_times[dtype].extend(matmul_seconds(matmul_session, product) for _ in range(3))
    for configuration in configurations:
      for length in configuration.by_length:
        configuration.run_step(length)
    print("round %d of %d done" % (round_index + 1, ROUNDS), flush=True)

  matmul_rates = {dtype: 2 * MATMUL_SIZE ** 3 / statistics.median(times) / 1e9
                  for dtype, times in matmul_times.items()}
  print("\n%dx%d matmul: float32 %.0f GFLOP/s, bfloat16 %.0f GFLOP/s (x%.2f)" %
        (MATMUL_SIZE, MATMUL_SIZE, matmul_rates[tf.float32], matmul_rates[tf.bfloat16],
         matmul_rates[tf.bfloat16] / matmul_rates[tf.float32]))
  for training in (True, False):
    print("\n%s, batch %d, max_seq_length %d" %
          ("fine-tuning (forward + backward + AdamWeightDecay)" if training
           else "prediction (forward)", BATCH_SIZE, MAX_SEQ_LENGTH))
    print("%-38s %8s %7s %9s %9s %9s" % ("", "ex/s", "ratio", "GFLOP/s", "of bf16", "useful"))
    baseline = None
    for configuration in configurations:
      if configuration.training != training:
        continue
      seconds = configuration.seconds_per_batch()
      examples_per_second = BATCH_SIZE / seconds
      baseline = baseline or examples_per_second
      rate = configuration.flops_per_batch(useful=False) / seconds / 1e9
      useful_rate = configuration.flops_per_batch(useful=True) / seconds / 1e9
      print("%-38s %8.1f %6.2fx %9.0f %8.0f%% %9.0f" %
            (configuration.name, examples_per_second, examples_per_second / baseline, rate,
             100 * rate / matmul_rates[tf.bfloat16], useful_rate))
  print("\nratio: examples/s over the float32 original; GFLOP/s: matmul FLOPs computed per "
        "second; of bf16: that as a share of the bfloat16 matmul rate; useful: GFLOP/s at the "
        "examples' real lengths.")


if __name__ == "__main__":
  main()
