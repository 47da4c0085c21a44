"""Tests of precision.py: the hardware check, the float32 fallback, the optimizer options of
each precision and the XLA settings."""

import os

import pytest
import tensorflow.compat.v1 as tf

import modeling
import precision


def test_compute_type_support_on_cpu(monkeypatch):
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type: [])
  monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "amx_bf16", "amx_tile"})
  assert precision.compute_type_support(tf.float32) == (True, "CPU")
  assert precision.compute_type_support(tf.bfloat16) == (True, "CPU with AMX-BF16")
  supported, hardware = precision.compute_type_support(tf.float16)
  assert not supported and "no fast float16" in hardware

  monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
  assert precision.compute_type_support(tf.bfloat16) == (True, "CPU with AVX512_BF16")
  monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2"})
  assert precision.compute_type_support(tf.bfloat16) == (
      False, "CPU without AMX-BF16 or AVX512_BF16")
  with pytest.raises(ValueError, match="Unsupported compute_type"):
    precision.compute_type_support(tf.int8)


@pytest.mark.parametrize("capability, expected", [
    ((7, 5), {tf.float32: True, tf.bfloat16: False, tf.float16: True}),
    ((8, 0), {tf.float32: True, tf.bfloat16: True, tf.float16: True}),
    ((6, 1), {tf.float32: True, tf.bfloat16: False, tf.float16: False}),
])
def test_compute_type_support_on_gpu(monkeypatch, capability, expected):
  gpu = object()
  monkeypatch.setattr(tf.config, "list_physical_devices",
                      lambda device_type: [gpu] if device_type == "GPU" else [])
  monkeypatch.setattr(tf.config.experimental, "get_device_details",
                      lambda device: {"compute_capability": capability} if device is gpu else {})
  for compute_type, supported in expected.items():
    assert precision.compute_type_support(compute_type) == (
        supported, "GPU of compute capability %d.%d" % capability)


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="Linux only")
def test_cpu_flags_of_this_machine_are_read():
  flags = precision._cpu_flags()  # pylint: disable=protected-access
  with open("/proc/cpuinfo") as cpuinfo:
    first_flags_line = next(line for line in cpuinfo if line.startswith("flags"))
  assert flags == set(first_flags_line.split(":", 1)[1].split())
  assert flags


def test_modeling_still_answers_the_hardware_question(monkeypatch):
  monkeypatch.setattr(precision, "compute_type_support", lambda dtype: (False, "asked"))
  assert modeling.compute_type_support(tf.bfloat16) == (False, "asked")


@pytest.mark.parametrize("supported", [True, False])
def test_compute_type_for_falls_back_to_float32_with_one_warning(monkeypatch, supported):
  monkeypatch.setattr(precision, "compute_type_support", lambda dtype: (supported, "a CPU"))
  warnings = []
  monkeypatch.setattr(tf.logging, "warning", lambda message, *args: warnings.append(
      message % args))
  assert precision.compute_type_for("fp32", use_tpu=False) == tf.float32
  assert precision.compute_type_for("bf16", use_tpu=True) == tf.bfloat16
  assert not warnings
  assert precision.compute_type_for("bf16", use_tpu=False) == (
      tf.bfloat16 if supported else tf.float32)
  assert warnings == ([] if supported else [
      "--precision=bf16 needs hardware this machine lacks (a CPU): running in float32"])


@pytest.mark.parametrize("compute_type, expected", [
    (tf.float32, dict(loss_scaling=False, fused=False)),
    (tf.bfloat16, dict(loss_scaling=False, fused=True)),
    (tf.float16, dict(loss_scaling=True, fused=True)),
])
def test_mixed_precision_optimizer_options(compute_type, expected):
  assert precision.mixed_precision_optimizer_options(compute_type) == expected


@pytest.mark.parametrize("use_xla, gpus, tf_xla_flags, expected", [
    (False, [], precision.CPU_XLA_FLAGS, False),
    # Without GPU, only where the user's own TF_XLA_FLAGS make XLA compile on CPU.
    (True, [], None, False),
    (True, [], "--tf_xla_min_cluster_size=4", False),
    (True, [], precision.CPU_XLA_FLAGS, True),
    (True, ["GPU:0"], None, True),
])
def test_xla_pays(monkeypatch, use_xla, gpus, tf_xla_flags, expected):
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda device_type: gpus)
  monkeypatch.setenv("TF_XLA_FLAGS", "")
  if tf_xla_flags is None:
    monkeypatch.delenv("TF_XLA_FLAGS")
  else:
    monkeypatch.setenv("TF_XLA_FLAGS", tf_xla_flags)
  assert precision.xla_pays(use_xla) == expected


def test_xla_session_config():
  assert precision.xla_session_config(None, use_xla=False) is None
  config = precision.xla_session_config(None, use_xla=True)
  assert config.allow_soft_placement
  assert config.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.ON_1
  given = tf.ConfigProto(inter_op_parallelism_threads=16)
  assert precision.xla_session_config(given, use_xla=True) is given
  assert given.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.ON_1
