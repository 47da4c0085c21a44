"""Only scripts read flag values: every top-level module without a `__main__` block gets what it
needs as arguments. Checked on the source, without importing it."""

import ast
import os

import pytest

import support


def library_modules():
  """The top-level modules of the repository that have no `if __name__ == "__main__":` block."""
  modules = []
  for name in sorted(os.listdir(support.REPO_DIR)):
    if name.endswith(".py"):
      with open(os.path.join(support.REPO_DIR, name)) as reader:
        tree = ast.parse(reader.read(), name)
      if not any(_is_main_block(node) for node in tree.body):
        modules.append((name, tree))
  return modules


def _is_main_block(node):
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and
          isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__" and
          any(isinstance(value, ast.Constant) and value.value == "__main__"
              for value in node.test.comparators))


def flag_value_reads(tree):
  """Returns the sorted line numbers where `tree` uses absl's FlagValues (`FLAGS`, `flags.FLAGS`).

  Two uses read no value and pass: asking whether a flag is defined (`"name" in flags.FLAGS`,
  which the flag groups do to define theirs once) and parsing a command line
  (`flags.FLAGS(argv)`). Any other use (an attribute, a subscript, an alias, an argument) reads
  values or hands them on.
  """
  parents = {}
  for node in ast.walk(tree):
    for child in ast.iter_child_nodes(node):
      parents[child] = node
  lines = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and any(alias.name == "FLAGS" for alias in node.names):
      lines.add(node.lineno)
    names_flag_values = ((isinstance(node, ast.Name) and node.id == "FLAGS") or
                         (isinstance(node, ast.Attribute) and node.attr == "FLAGS"))
    if names_flag_values and not _reads_no_value(node, parents.get(node)):
      lines.add(node.lineno)
  return sorted(lines)


def _reads_no_value(node, parent):
  if isinstance(parent, ast.Compare):
    return node in parent.comparators and all(
        isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops)
  return isinstance(parent, ast.Call) and parent.func is node


@pytest.mark.parametrize("source, expected_lines", [
    ("FLAGS = flags.FLAGS\nx = FLAGS.use_tpu\n", [1, 2]),
    ("def f():\n  return flags.FLAGS['use_tpu'].value\n", [2]),
    ("from absl.flags import FLAGS\n", [1]),
    ("def f(values=flags.FLAGS):\n  pass\n", [1]),
    ("if 'use_tpu' in flags.FLAGS:\n  pass\nflags.FLAGS(['prog'], known_only=True)\n", []),
    ("flags.DEFINE_bool('use_tpu', False, 'help')\n", []),
])
def test_the_scan_finds_flag_reads(source, expected_lines):
  assert flag_value_reads(ast.parse(source)) == expected_lines


def test_library_modules_read_no_flag_values():
  modules = library_modules()
  names = [name for name, _ in modules]
  assert {"estimator_setup.py", "input_pipeline.py", "precision.py", "flag_groups.py",
          "modeling.py", "serving.py", "script_io.py"} <= set(names)
  assert "run_classifier.py" not in names
  reads = {name: flag_value_reads(tree) for name, tree in modules}
  assert {name: lines for name, lines in reads.items() if lines} == {}
