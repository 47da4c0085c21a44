"""Tests of conll_metrics.py: entities and scores on hand-worked cases, as conlleval counts them,
and against seqeval (an optional test-only dependency) on random tag sequences."""

import random

import pytest

import conll_metrics


def entities(tags):
  return conll_metrics.entities(tags.split())


def scores(gold, predicted):
  """Scores of sentences given as strings of space-separated tags, one string per sentence."""
  return conll_metrics.evaluate([g.split() for g in gold], [p.split() for p in predicted])


def test_split_tag():
  assert conll_metrics.split_tag("B-PER") == ("B", "PER")
  assert conll_metrics.split_tag("I-ORG-GPE") == ("I", "ORG-GPE")  # conlleval: the first hyphen
  assert conll_metrics.split_tag("O") == ("O", "")
  assert conll_metrics.split_tag("NN") == ("B", "NN")
  assert conll_metrics.split_tag("-LRB-") == ("B", "-LRB-")
  assert [conll_metrics.has_prefix(tag) for tag in ("S-LOC", "O", "NN", "B-")] == [
      True, False, False, False]


def test_iob2_entities():
  assert entities("B-PER I-PER O B-LOC B-LOC I-LOC O") == [
      ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5)]


def test_iob1_entities_start_with_i_and_use_b_only_between_neighbours_of_one_type():
  # CoNLL-2003: "I-PER I-PER B-PER" is two people, the second directly after the first.
  assert entities("I-PER I-PER B-PER O I-LOC") == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]
  assert entities("I-PER I-PER I-PER") == [("PER", 0, 2)]


def test_a_change_of_type_ends_an_entity_whatever_the_prefix():
  assert entities("B-PER I-LOC I-LOC O I-ORG I-PER") == [
      ("PER", 0, 0), ("LOC", 1, 2), ("ORG", 4, 4), ("PER", 5, 5)]


def test_entities_cut_off_at_the_end_of_a_sentence():
  assert entities("O O B-LOC I-LOC") == [("LOC", 2, 3)]
  assert entities("I-MISC") == [("MISC", 0, 0)]


def test_iobes_entities():
  assert entities("S-PER S-PER B-LOC I-LOC E-LOC S-LOC") == [
      ("PER", 0, 0), ("PER", 1, 1), ("LOC", 2, 4), ("LOC", 5, 5)]
  # conlleval would join these two into one entity; IOBES means two.
  assert entities("B-LOC E-LOC B-LOC E-LOC") == [("LOC", 0, 1), ("LOC", 2, 3)]


def test_ill_formed_iobes_predictions_are_read_by_the_same_rules():
  assert entities("B-PER O E-PER I-PER E-LOC") == [("PER", 0, 0), ("PER", 2, 2), ("PER", 3, 3),
                                                   ("LOC", 4, 4)]


def test_tags_without_prefix_are_one_word_entities_as_conlleval_r_reads_them():
  assert entities("NN NN O VB") == [("NN", 0, 0), ("NN", 1, 1), ("VB", 3, 3)]


def test_scores_of_a_small_set_worked_by_hand():
  result = scores(
      gold=["B-PER I-PER O B-LOC", "O B-ORG I-ORG O", "B-LOC"],
      predicted=["B-PER I-PER O B-ORG", "O B-ORG O O", "B-LOC"])
  # Gold: PER, LOC, ORG, LOC (4); found: PER, ORG, ORG(1 word), LOC (4); correct: PER, LOC (2).
  assert result.num_words == 9
  assert result.accuracy == pytest.approx(7 / 9)
  assert result.overall == (0.5, 0.5, 0.5, 4, 4, 2)
  assert list(result.by_type) == ["LOC", "ORG", "PER"]
  assert result.by_type["LOC"] == (1.0, 0.5, pytest.approx(2 / 3), 2, 1, 1)
  assert result.by_type["ORG"] == (0.0, 0.0, 0.0, 1, 2, 0)
  assert result.by_type["PER"] == (1.0, 1.0, 1.0, 1, 1, 1)


def test_iob1_predictions_of_iob2_gold_entities_are_correct_though_tags_differ():
  result = scores(gold=["B-PER I-PER B-PER O"], predicted=["I-PER I-PER B-PER O"])
  assert result.overall == (1.0, 1.0, 1.0, 2, 2, 2)
  assert result.accuracy == 0.75


def test_a_wrong_type_or_a_wrong_boundary_makes_an_entity_wrong():
  result = scores(gold=["B-PER I-PER O", "B-LOC I-LOC I-LOC"],
                  predicted=["B-PER I-LOC O", "B-LOC I-LOC O"])
  assert result.overall == (0.0, 0.0, 0.0, 2, 3, 0)
  assert result.by_type["LOC"] == (0.0, 0.0, 0.0, 1, 2, 0)
  assert result.accuracy == pytest.approx(4 / 6)


def test_entities_do_not_run_across_sentences():
  # One entity in each sentence, though the second sentence starts with an I- tag.
  result = scores(gold=["O B-LOC", "I-LOC O"], predicted=["O B-LOC", "I-LOC O"])
  assert result.overall.gold == 2 and result.overall.correct == 2


def test_no_entities_at_all_scores_zero():
  result = scores(gold=["O O"], predicted=["O O"])
  assert result.overall == (0.0, 0.0, 0.0, 0, 0, 0)
  assert result.accuracy == 1.0 and not result.by_type
  empty = conll_metrics.evaluate([], [])
  assert (empty.num_words, empty.accuracy) == (0, 0.0)


def test_sentences_must_pair_up():
  with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
    scores(gold=["O", "O"], predicted=["O"])
  with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
    scores(gold=["O", "O O"], predicted=["O", "O"])


# ------------------------------------------------------------------------------------------------
# seqeval, which follows conlleval's rules (with S- and E- as here), as an oracle.

TAG_SETS = {
    "iob": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG-X", "I-ORG-X"],
    "iobes": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
}


def random_sentences(rng, tags, count):
  return [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(count)]


@pytest.mark.parametrize("scheme", sorted(TAG_SETS))
def test_random_tag_sequences_score_as_seqeval_scores_them(scheme):
  seqeval_metrics = pytest.importorskip("seqeval.metrics")
  from seqeval.metrics import sequence_labeling  # pylint: disable=g-import-not-at-top
  rng = random.Random(scheme)
  for _ in range(20):
    gold = random_sentences(rng, TAG_SETS[scheme], 30)
    # Predictions that agree with the gold tags on most words, so that some entities match.
    predicted = [[tag if rng.random() < 0.7 else rng.choice(TAG_SETS[scheme]) for tag in tags]
                 for tags in gold]
    for tags in gold + predicted:
      assert conll_metrics.entities(tags) == sequence_labeling.get_entities(tags)
    result = conll_metrics.evaluate(gold, predicted)
    assert result.overall.precision == pytest.approx(
        seqeval_metrics.precision_score(gold, predicted, zero_division=0))
    assert result.overall.recall == pytest.approx(
        seqeval_metrics.recall_score(gold, predicted, zero_division=0))
    assert result.overall.f1 == pytest.approx(
        seqeval_metrics.f1_score(gold, predicted, zero_division=0))
    assert result.accuracy == pytest.approx(seqeval_metrics.accuracy_score(gold, predicted))
    report = seqeval_metrics.classification_report(gold, predicted, output_dict=True,
                                                   zero_division=0)
    for entity_type, type_scores in result.by_type.items():
      assert (type_scores.precision, type_scores.recall, type_scores.f1, type_scores.gold) == (
          pytest.approx(report[entity_type]["precision"]),
          pytest.approx(report[entity_type]["recall"]),
          pytest.approx(report[entity_type]["f1-score"]), report[entity_type]["support"])
