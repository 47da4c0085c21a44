"""The precision and hardware policy: what the model computes in, and how XLA compiles it.

--precision names the dtype of the encoder's matrix multiplications (`modeling.BertModel`'s
`compute_type`); `compute_type_for` falls back to float32, with one warning, on hardware without
fast units for it (`compute_type_support` looks at the GPU, or at the CPU's feature flags).
`mixed_precision_optimizer_options` is what the optimizer needs for that dtype. --use_xla
compiles the sessions with XLA (`xla_session_config`) where it pays (`xla_pays`): on GPU, or
on CPU when the user's TF_XLA_FLAGS ask for it.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import os
import sys

import modeling
import tensorflow.compat.v1 as tf

# The compute capability a GPU needs for each dtype: Ampere for bfloat16, Volta tensor cores
# for float16.
_GPU_CAPABILITY_NEEDED = {tf.float32: (0, 0), tf.bfloat16: (8, 0), tf.float16: (7, 0)}


def compute_type_for(precision, use_tpu):
  """Returns the dtype the model computes in: that of `precision`, or float32 where unsupported.

  Args:
    precision: "fp32", "bf16" or "fp16" (flag --precision, see `modeling.get_compute_type`).
    use_tpu: on TPU bfloat16 is native and not checked.

  Returns:
    tf.float32, tf.bfloat16 or tf.float16. On hardware without fast units for the precision
    asked for (`compute_type_support`), logs one warning and returns tf.float32.
  """
  dtype = modeling.get_compute_type(precision)
  if dtype == tf.float32 or use_tpu:
    return dtype
  supported, hardware = compute_type_support(dtype)
  if not supported:
    tf.logging.warning("--precision=%s needs hardware this machine lacks (%s): running in "
                       "float32", precision, hardware)
    return tf.float32
  return dtype


def compute_type_support(compute_type):
  """Tells whether this machine has hardware that makes `compute_type` faster than float32.

  The rule: float32 always; on a GPU (the first one TensorFlow sees), bfloat16 from compute
  capability 8.0 (Ampere) and float16 from 7.0 (Volta tensor cores); on a CPU without GPU,
  bfloat16 with AMX-BF16 or AVX512_BF16 (oneDNN's bfloat16 kernels; elsewhere bfloat16 is
  emulated, no faster than float32), float16 never (TensorFlow 2.15 emulates float16 matrix
  multiplications on CPU, hundreds of times slower than float32). Cloud TPUs compute in
  bfloat16 natively: this function looks at the local machine only, so do not ask it on TPU.

  Args:
    compute_type: tf.float32, tf.bfloat16 or tf.float16.

  Returns:
    (supported, hardware): bool, and a few words on the hardware found, for a log line such as
    "running in float32: CPU without AMX-BF16 or AVX512_BF16".

  Raises:
    ValueError: `compute_type` is not one of the three dtypes.
  """
  try:
    dtype = tf.as_dtype(compute_type)
  except TypeError:
    dtype = None
  if dtype not in _GPU_CAPABILITY_NEEDED:
    raise ValueError("Unsupported compute_type %r: supported are tf.float32, tf.bfloat16 and "
                     "tf.float16" % (compute_type,))
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    capability = tf.config.experimental.get_device_details(gpus[0]).get(
        "compute_capability") or (0, 0)
    hardware = "GPU of compute capability %d.%d" % tuple(capability)
    return tuple(capability) >= _GPU_CAPABILITY_NEEDED[dtype], hardware
  if dtype == tf.float32:
    return True, "CPU"
  if dtype == tf.float16:
    return False, "CPU (no fast float16 matrix multiplication in TensorFlow on CPU)"
  cpu_flags = _cpu_flags()
  for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512_BF16")):
    if flag in cpu_flags:
      return True, "CPU with %s" % name
  return False, "CPU without AMX-BF16 or AVX512_BF16"


def _cpu_flags():
  """Returns the set of CPU feature flags Linux reports; empty elsewhere."""
  if not sys.platform.startswith("linux"):
    return set()
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def mixed_precision_optimizer_options(compute_type):
  """`optimization.create_optimizer` keyword arguments for a model computing in `compute_type`.

  float16 needs dynamic loss scaling; in either half precision the fused, in-place Adam update
  is used, its rounding differences being far below those of the model's. float32 keeps the
  original's update.
  """
  return dict(loss_scaling=compute_type == tf.float16, fused=compute_type != tf.float32)


# TF_XLA_FLAGS that make XLA compile on a machine without GPU, where the scripts leave it off
# (`xla_pays`): XLA fuses the element-wise work and leaves the matrix multiplications to
# oneDNN, whose bfloat16 kernels use AMX where the CPU has it (XLA's own CPU ones do not).
CPU_XLA_FLAGS = "--tf_xla_cpu_global_jit --tf_xla_ops_to_cluster=FUSIBLE"


def xla_pays(use_xla):
  """Whether the sessions compile with XLA for --use_xla (`use_xla`) on this machine.

  With a GPU, yes. On a machine without GPU XLA made every benchmark here slower
  (bench/bench_whole_run.py, bench/bench_pretraining.py: its steps ran at 0.6x to 0.8x the
  speed of those without it, and it compiles each batch shape for seconds on top): its CPU kernels
  of the element-wise work use fewer cores than TensorFlow's own. So there it compiles only
  when the user's TF_XLA_FLAGS, set before the script starts, ask for it with
  --tf_xla_cpu_global_jit (e.g. CPU_XLA_FLAGS); otherwise one line says that it runs without.
  """
  if not use_xla or tf.config.list_physical_devices("GPU"):
    return use_xla
  if "--tf_xla_cpu_global_jit" in os.environ.get("TF_XLA_FLAGS", ""):
    return True
  tf.logging.info(
      "--use_xla: running without XLA: on a machine without GPU it is slower than TensorFlow's "
      "own kernels. To compile anyway, start the script with TF_XLA_FLAGS=\"%s\"",
      CPU_XLA_FLAGS)
  return False


def xla_session_config(session_config, use_xla):
  """Sets XLA on `session_config` (a tf.ConfigProto or None) if `use_xla`; returns it."""
  if not use_xla:
    return session_config
  session_config = session_config or tf.ConfigProto(allow_soft_placement=True)
  session_config.graph_options.optimizer_options.global_jit_level = (
      tf.OptimizerOptions.ON_1)
  return session_config
