"""The quick start's task, data/next_sentence: the committed files and the script that makes them."""

import csv
import importlib.util
import os

import pytest

from support import REPO_DIR

TASK_DIR = os.path.join(REPO_DIR, "data", "next_sentence")
FILE_NAMES = ("train.tsv", "dev.tsv", "test.tsv")


def _load_generator():
  path = os.path.join(REPO_DIR, "data", "make_next_sentence_task.py")
  spec = importlib.util.spec_from_file_location("make_next_sentence_task", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _committed(file_name):
  with open(os.path.join(TASK_DIR, file_name), encoding="utf-8", newline="") as reader:
    return reader.read()


def _rows(file_name):
  """The rows of a committed file after its header, as run_classifier reads them (tabs only)."""
  rows = list(csv.reader(_committed(file_name).splitlines(), delimiter="\t",
                         quoting=csv.QUOTE_NONE))
  return rows[1:]


@pytest.fixture(scope="module")
def sample_lines():
  with open(os.path.join(REPO_DIR, "sample_text.txt"), encoding="utf-8") as reader:
    return reader.read().split("\n")


def test_committed_files_are_what_the_generator_makes(sample_lines):
  generated = _load_generator().make_task("\n".join(sample_lines))
  assert sorted(generated) == sorted(FILE_NAMES)
  for file_name in FILE_NAMES:
    assert _committed(file_name) == generated[file_name], file_name


@pytest.mark.parametrize("file_name", FILE_NAMES)
def test_ids_are_line_numbers_and_label_says_whether_b_is_the_next_line(file_name, sample_lines):
  rows = _rows(file_name)
  assert rows
  follows = []
  for row in rows:
    assert len(row) == 5
    first_column, line_a, line_b, sentence_a, sentence_b = row
    assert sample_lines[int(line_a) - 1] == sentence_a
    assert sample_lines[int(line_b) - 1] == sentence_b
    follows.append(int(line_b) == int(line_a) + 1)
    if file_name != "test.tsv":
      assert first_column == ("1" if follows[-1] else "0")
  # Balanced: every sentence A appears once with its successor and once with another sentence.
  assert sum(follows) * 2 == len(rows)


def test_sets_share_no_sentence():
  sentences = {}
  for file_name in FILE_NAMES:
    sentences[file_name] = {line for row in _rows(file_name) for line in row[1:3]}
  assert not sentences["train.tsv"] & sentences["dev.tsv"]
  assert not sentences["train.tsv"] & sentences["test.tsv"]
  assert not sentences["dev.tsv"] & sentences["test.tsv"]
