"""The flags the scripts share, defined once: TPU, scale and speed.

Each `define_*` function defines its group the first time it is called in a process, with the
original's names and defaults where the original had the flag. The scripts read the values in
their `main()` into one `estimator_setup.RunOptions`, whose fields are these flags' names.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

from absl import flags
import estimator_setup
import training_guard


def define_tpu_flags():
  """Defines the TPU flags of the original scripts, with their defaults, once per process."""
  if "use_tpu" in flags.FLAGS:
    return
  flags.DEFINE_bool("use_tpu", False, "Whether to use TPU or GPU/CPU.")
  flags.DEFINE_string(
      "tpu_name", None,
      "The Cloud TPU to use for training. This should be either the name used when creating "
      "the Cloud TPU, or a grpc://ip.address.of.tpu:8470 url.")
  flags.DEFINE_string(
      "tpu_zone", None,
      "[Optional] GCE zone where the Cloud TPU is located in. If not specified, we will "
      "attempt to automatically detect it from metadata.")
  flags.DEFINE_string(
      "gcp_project", None,
      "[Optional] Project name for the Cloud TPU-enabled project. If not specified, we will "
      "attempt to automatically detect it from metadata.")
  flags.DEFINE_string("master", None, "[Optional] TensorFlow master URL.")
  flags.DEFINE_integer(
      "num_tpu_cores", 8,
      "Only used if `use_tpu` is True. Total number of TPU cores to use.")


def define_scale_flags():
  """Defines the flags for several devices, machines and micro-batches, once per process."""
  if "distribution_strategy" in flags.FLAGS:
    return
  flags.DEFINE_enum(
      "distribution_strategy", "none", list(estimator_setup.DISTRIBUTION_STRATEGIES),
      "How to spread training over devices when not --use_tpu: none (one device, the "
      "original's TPUEstimator), mirrored (the GPUs of this machine) or multi_worker_mirrored "
      "(the GPUs of several machines listed in the TF_CONFIG environment variable). "
      "Evaluation and prediction run on one device.")
  flags.DEFINE_integer(
      "num_gpus", None,
      "Only used with --distribution_strategy=mirrored: the number of GPUs to train on (the "
      "first ones). Default: all visible GPUs, or the CPU when there is none.")
  flags.DEFINE_integer(
      "peer_timeout_seconds", training_guard.PEER_TIMEOUT_SECONDS,
      "Only used with --distribution_strategy=multi_worker_mirrored: when another worker has "
      "not answered for this many seconds (its process frozen, its machine or network gone), "
      "this one stops with a line naming it; restart every worker to resume. A worker that "
      "died stops the others at once. Busy workers still answer: long steps, compilation and "
      "checkpoint saves do not count.")
  flags.DEFINE_integer(
      "gradient_accumulation_steps", 1,
      "Split each batch of --train_batch_size examples into this many micro-batches, run one "
      "after the other, and update the model once with their summed gradients. Steps "
      "(--num_train_steps, --num_warmup_steps, --save_checkpoints_steps) count updates.")


def define_speed_flags():
  """Defines --precision, --use_xla and --batch_by_length, once per process."""
  if "precision" in flags.FLAGS:
    return
  flags.DEFINE_enum(
      "precision", "fp32", ["fp32", "bf16", "fp16"],
      "The precision of the encoder's matrix multiplications: fp32 (the original), bf16 "
      "(bfloat16: AMX/AVX512_BF16 CPUs, Ampere+ GPUs, TPUs) or fp16 (float16 with dynamic loss "
      "scaling: GPUs). Variables, checkpoints, layer norms, softmaxes and losses stay float32. "
      "On hardware without fast units for it, the run logs a warning and uses float32.")
  flags.DEFINE_bool(
      "use_xla", False,
      "Compile the graph with XLA (global_jit_level ON_1; on CPU only the element-wise work, "
      "unless TF_XLA_FLAGS is set). It pays in training; on CPU, predict without it.")
  flags.DEFINE_bool(
      "batch_by_length", False,
      "Off TPU: train on batches of examples of similar length, and evaluate and predict in "
      "batches sorted by length within windows (outputs come back in input order), so less "
      "padding is computed. The order in which training sees the examples changes.")
