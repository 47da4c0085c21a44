"""Entity scores of word tags, counted as the CoNLL evaluation script `conlleval` counts them.

Every word has a tag: "O" outside any entity, else a prefix and the entity's type, "B-PER". An
entity (conlleval's "chunk") is a run of words that conlleval's rules group together, from the
prefixes and types of each two neighbouring words:
- IOB1 (CoNLL-2003: I- inside an entity, B- only for an entity that directly follows one of the
  same type) and IOB2 (B- at the start of every entity) are read by the same rules, so both,
  and any mix of them, give the same entities.
- IOBES also has E- (the last word of an entity) and S- (an entity of one word). conlleval knows
  E- from the IOE schemes, not S-, and carries an entity on from an E- into a B- of the same
  type; here an S- word is an entity of its own and an E- word always ends one, as in the
  Python port of conlleval that seqeval follows. On IOB1, IOB2, IOE1 and IOE2 tags these rules
  are conlleval's.
- A tag without a B-, I-, E- or S- prefix ("NN") is an entity of one word, of the tag's own
  type, as `conlleval -r` reads raw tags.
An entity is found correctly when the predicted tags give one with the same first word, last
word and type as the gold tags. Precision is correct / found, recall is correct / gold, F1 is
their harmonic mean, each 0 when it would divide by 0; overall and for each type that the gold
or the predicted tags have. Accuracy is the fraction of words whose predicted tag equals their
gold tag, "O" included. conlleval prints these as percentages; here they are fractions.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import re

OUTSIDE = "O"

# A tag's prefix (B, I, E or S) and its entity type.
_PREFIXED_TAG = re.compile(r"^([BIES])-(.+)$")

# Scores of one entity type, or of all: counts of entities and the ratios conlleval prints.
EntityScores = collections.namedtuple(
    "EntityScores", ["precision", "recall", "f1", "gold", "found", "correct"])

# The scores of a whole set: word counts, accuracy, the overall `EntityScores` and a dict of
# entity type -> `EntityScores`, sorted by type.
ConllScores = collections.namedtuple(
    "ConllScores", ["num_words", "accuracy", "overall", "by_type"])


def split_tag(tag):
  """Returns the prefix and entity type of a tag: "B-PER" -> ("B", "PER"), "O" -> ("O", "").

  A tag without a B-, I-, E- or S- prefix is a one-word entity of its own type: "NN" -> ("B",
  "NN").
  """
  if tag == OUTSIDE:
    return OUTSIDE, ""
  match = _PREFIXED_TAG.match(tag)
  if match is None:
    return "B", tag
  return match.group(1), match.group(2)


def has_prefix(tag):
  """Whether `tag` has a B-, I-, E- or S- prefix ("O" has none)."""
  return _PREFIXED_TAG.match(tag) is not None


def _ends_entity(previous_prefix, prefix, previous_type, entity_type):
  """Whether an entity ends between two words, given their (prefix, type) pairs."""
  if previous_prefix == OUTSIDE:
    return False
  if previous_prefix in ("E", "S") or previous_type != entity_type:
    return True
  # The previous word is B- or I- of the same type.
  return prefix in ("B", "S", OUTSIDE)


def _starts_entity(previous_prefix, prefix, previous_type, entity_type):
  """Whether an entity starts at a word, given its and the previous word's (prefix, type)."""
  if prefix == OUTSIDE:
    return False
  if prefix in ("B", "S") or previous_type != entity_type:
    return True
  # An I- or E- word of the previous word's type.
  return previous_prefix in ("E", "S", OUTSIDE)


def entities(tags):
  """Returns the entities of one sentence's tags.

  Args:
    tags: list of str, one tag per word.

  Returns:
    list of (type, first word index, last word index) tuples, in order.
  """
  found = []
  start = None
  previous_prefix, previous_type = OUTSIDE, ""
  # A sentence ends as if an "O" word followed it.
  for index, tag in enumerate(list(tags) + [OUTSIDE]):
    prefix, entity_type = split_tag(tag)
    if start is not None and _ends_entity(previous_prefix, prefix, previous_type, entity_type):
      found.append((previous_type, start, index - 1))
      start = None
    if _starts_entity(previous_prefix, prefix, previous_type, entity_type):
      start = index
    previous_prefix, previous_type = prefix, entity_type
  return found


def _entity_scores(gold, found, correct):
  """EntityScores of the given counts."""
  precision = correct / found if found else 0.0
  recall = correct / gold if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return EntityScores(precision=precision, recall=recall, f1=f1, gold=gold, found=found,
                      correct=correct)


def evaluate(gold_sentences, predicted_sentences):
  """Scores predicted tags against gold tags as conlleval does.

  Args:
    gold_sentences: list of sentences, each a list of gold tags (str), one per word.
    predicted_sentences: list of the same length; each sentence has one predicted tag per word.

  Returns:
    A ConllScores.

  Raises:
    ValueError: the sentences or their words do not pair up.
  """
  if len(gold_sentences) != len(predicted_sentences):
    raise ValueError("%d gold sentences but %d predicted ones" %
                     (len(gold_sentences), len(predicted_sentences)))
  num_words = 0
  num_correct_tags = 0
  gold_counts = collections.Counter()
  found_counts = collections.Counter()
  correct_counts = collections.Counter()
  for index, (gold_tags, predicted_tags) in enumerate(zip(gold_sentences, predicted_sentences)):
    if len(gold_tags) != len(predicted_tags):
      raise ValueError("sentence %d has %d gold tags but %d predicted ones" %
                       (index, len(gold_tags), len(predicted_tags)))
    num_words += len(gold_tags)
    num_correct_tags += sum(gold == predicted for gold, predicted in zip(gold_tags,
                                                                          predicted_tags))
    gold_entities = entities(gold_tags)
    found_entities = entities(predicted_tags)
    correct_entities = set(gold_entities) & set(found_entities)
    gold_counts.update(entity[0] for entity in gold_entities)
    found_counts.update(entity[0] for entity in found_entities)
    correct_counts.update(entity[0] for entity in correct_entities)

  by_type = collections.OrderedDict(
      (entity_type, _entity_scores(gold_counts[entity_type], found_counts[entity_type],
                                   correct_counts[entity_type]))
      for entity_type in sorted(set(gold_counts) | set(found_counts)))
  overall = _entity_scores(sum(gold_counts.values()), sum(found_counts.values()),
                           sum(correct_counts.values()))
  return ConllScores(num_words=num_words,
                     accuracy=num_correct_tags / num_words if num_words else 0.0,
                     overall=overall, by_type=by_type)
