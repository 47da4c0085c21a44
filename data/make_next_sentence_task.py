"""Makes the quick start's sentence-pair task from sample_text.txt: does sentence B follow A?

Writes `data/next_sentence/{train,dev,test}.tsv` in the GLUE MRPC layout, so that
`run_classifier.py --task_name=MRPC --data_dir=data/next_sentence` fine-tunes on it. It is the
next sentence task of BERT's pre-training with MRPC's sense of the labels: for every sentence A
of a document but the last, a set holds two pairs, A with the sentence that follows it (label
1) and A with a sentence of another document of the same set (label 0). Each document goes whole
into one set, so dev and test sentences are never seen in training. The `#1 ID` and `#2 ID`
columns are the sentences' line numbers in sample_text.txt: B follows A exactly when `#2 ID` is
`#1 ID` + 1, which is how the labels of test.tsv (GLUE's index column in place of the label) can
be recovered.

Usage, from any folder: python data/make_next_sentence_task.py
The files come out the same on every run (a fixed seed); a test checks that the committed files
are what this script makes.
"""

import os
import random

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INPUT_FILE = os.path.join(REPO_DIR, "sample_text.txt")
OUTPUT_DIR = os.path.join(REPO_DIR, "data", "next_sentence")

RANDOM_SEED = 12345
NUM_DEV_DOCUMENTS = 3
NUM_TEST_DOCUMENTS = 3

LABELED_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
TEST_HEADER = ("index", "#1 ID", "#2 ID", "#1 String", "#2 String")


def read_documents(text):
  """Returns the documents of `text`: lists of (line number, sentence), 1-based lines.

  The text has one sentence per line and a blank line between documents.
  """
  documents = [[]]
  for line_number, line in enumerate(text.split("\n"), start=1):
    sentence = line.strip()
    if sentence:
      documents[-1].append((line_number, sentence))
    elif documents[-1]:
      documents.append([])
  return [document for document in documents if document]


def split_documents(documents, rng):
  """Deals whole documents to the three sets; returns {"train": [...], "dev": ..., "test": ...}."""
  shuffled = list(documents)
  rng.shuffle(shuffled)
  num_held_out = NUM_DEV_DOCUMENTS + NUM_TEST_DOCUMENTS
  return {"dev": shuffled[:NUM_DEV_DOCUMENTS],
          "test": shuffled[NUM_DEV_DOCUMENTS:num_held_out],
          "train": shuffled[num_held_out:]}


def make_pairs(documents, rng):
  """Returns the shuffled pairs of one set: tuples (label, line_a, line_b, sentence_a, sentence_b).

  Label "1": B is the sentence after A; "0": B is a random sentence of another document of the
  same set. Every A appears once with each label, so A alone says nothing about the label.
  """
  pairs = []
  for index, document in enumerate(documents):
    others = documents[:index] + documents[index + 1:]
    for (line_a, sentence_a), (line_b, sentence_b) in zip(document, document[1:]):
      pairs.append(("1", line_a, line_b, sentence_a, sentence_b))
      line_random, sentence_random = rng.choice(rng.choice(others))
      pairs.append(("0", line_a, line_random, sentence_a, sentence_random))
  rng.shuffle(pairs)
  return pairs


def tsv_text(pairs, is_test):
  """Returns the TSV file of `pairs`: MRPC's labeled layout, or its test layout (index first)."""
  rows = [TEST_HEADER if is_test else LABELED_HEADER]
  for index, (label, line_a, line_b, sentence_a, sentence_b) in enumerate(pairs):
    first_column = str(index) if is_test else label
    rows.append((first_column, str(line_a), str(line_b), sentence_a, sentence_b))
  return "".join("\t".join(row) + "\n" for row in rows)


def make_task(text):
  """Returns {file name: file content} of the task made from `text` (sample_text.txt's)."""
  rng = random.Random(RANDOM_SEED)
  sets = split_documents(read_documents(text), rng)
  files = {}
  for set_name in ("train", "dev", "test"):
    pairs = make_pairs(sets[set_name], rng)
    files[set_name + ".tsv"] = tsv_text(pairs, is_test=set_name == "test")
  return files


def main():
  with open(INPUT_FILE, encoding="utf-8") as reader:
    files = make_task(reader.read())
  os.makedirs(OUTPUT_DIR, exist_ok=True)
  for file_name, content in sorted(files.items()):
    path = os.path.join(OUTPUT_DIR, file_name)
    with open(path + ".incomplete", "w", encoding="utf-8", newline="\n") as writer:
      writer.write(content)
    os.replace(path + ".incomplete", path)
    print("%s: %d pairs" % (os.path.relpath(path, REPO_DIR), content.count("\n") - 1))


if __name__ == "__main__":
  main()
