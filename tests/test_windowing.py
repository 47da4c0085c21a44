"""Tests of windowing.py: windows over long token sequences and the best window of a token."""

import windowing


def test_doc_spans_overlap_by_the_stride():
  assert [tuple(span) for span in windowing.doc_spans(10, 4, 2)] == [
      (0, 4), (2, 4), (4, 4), (6, 4)]
  assert [tuple(span) for span in windowing.doc_spans(3, 4, 2)] == [(0, 3)]
  assert windowing.doc_spans(0, 4, 2) == []


def test_a_stride_of_the_window_or_more_gives_adjacent_windows():
  assert [tuple(span) for span in windowing.doc_spans(10, 4, 4)] == [(0, 4), (4, 4), (8, 2)]
  assert windowing.doc_spans(10, 4, 9) == windowing.doc_spans(10, 4, 4)


def test_a_token_counts_in_the_window_where_it_has_most_context():
  # "the man went to the store and bought a gallon of milk": windows A [0, 4], B [3, 7],
  # C [6, 10]. "bought" (7) has 4 left / 0 right in B, 1 / 3 in C: C wins.
  spans = windowing.doc_spans(12, 5, 3)
  assert [tuple(span) for span in spans][:3] == [(0, 5), (3, 5), (6, 5)]
  assert windowing.best_window(spans, 7) == 2
  # "to" (3) has 3 / 1 in A and 0 / 4 in B: A wins; the first token only has A.
  assert windowing.best_window(spans, 3) == 0
  assert windowing.best_window(spans, 0) == 0
  assert windowing.best_window(spans, 12) is None


def test_ties_go_to_the_longer_window_then_the_first():
  # Token 4 has 2 / 1 of context in [2, 5] and 1 / 2 in [3, 7] (length 5): the longer wins.
  spans = [windowing.DocSpan(2, 4), windowing.DocSpan(3, 5)]
  assert windowing.best_window(spans, 4) == 1
  # Token 3 has 3 / 1 in [0, 4] and 1 / 3 in [2, 6], windows of one length: the first wins.
  spans = [windowing.DocSpan(0, 5), windowing.DocSpan(2, 5)]
  assert windowing.best_window(spans, 3) == 0


def test_windows_with_a_stride_beyond_their_length_follow_each_other():
  # As the original's: each window starts min(length, doc_stride) after the previous one, so no
  # token is skipped (run_squad.py --max_seq_length=128 --doc_stride=64 leaves 61-token windows).
  assert [tuple(span) for span in windowing.doc_spans(150, 61, 64)] == [
      (0, 61), (61, 61), (122, 28)]
