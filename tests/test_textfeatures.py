"""Built-in per-step text features and the --labels CSV reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lstmviz_cli.analysis.textfeatures import (
    FEATURE_DEFINITIONS,
    read_labels_csv,
    step_tokens,
    text_features,
)
from lstmviz_cli.errors import InputError
from lstmviz_cli.glyphs import display_token


def test_features_of_a_known_string() -> None:
    text = 'Ab "c(d)" 9.\nX'
    f = text_features(list(text))
    assert set(f) == set(FEATURE_DEFINITIONS)
    #                       A  b  ␣  "  c  (  d  )  "  ␣  9  .  ↵  X
    assert f["inside_quotes"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert f["bracket_depth"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert f["position_in_word"].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert f["position_in_line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0]
    assert f["whitespace"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]
    assert f["uppercase"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert f["digit"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]
    assert f["end_of_sentence"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_features_match_the_sample_corpus_definition() -> None:
    """Same convention as sample_models/data.py's structure_signals (the state after the character)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample_models"))
    try:
        from data import generate_corpus, structure_signals
    finally:
        sys.path.pop(0)
    text = generate_corpus(800, seed=3)
    ours = text_features(list(text))
    theirs = structure_signals(text)
    np.testing.assert_array_equal(ours["inside_quotes"], theirs["inside_quotes"])
    np.testing.assert_array_equal(ours["bracket_depth"], theirs["bracket_depth"])


def test_bracket_depth_never_negative_and_word_tokens() -> None:
    f = text_features([")", "(", "(", ")"])
    assert f["bracket_depth"].tolist() == [0, 1, 2, 1]
    words = text_features(["Hello", "world", "42", "."])
    assert words["uppercase"].tolist() == [1, 0, 0, 0]
    assert words["digit"].tolist() == [0, 0, 1, 0]
    assert words["end_of_sentence"].tolist() == [0, 0, 0, 1]


def test_step_tokens_and_display() -> None:
    assert step_tokens("ab", None, 2) == ["a", "b"]
    assert step_tokens("abc", ["x", "y"], 2) == ["x", "y"]
    assert step_tokens(None, None, 2) is None
    assert [display_token(t) for t in (" ", "\n", "\t", "a", "\x07")] == ["\u2423", "\u21b5", "\u21e5", "a", "\\x07"]
    assert display_token("a\x00b c\u202e") == "a\\x00b c\\u202e"


def test_read_labels_csv(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("noun,verb\n1,0\n0,1\n0.5,0\n")
    labels = read_labels_csv(path, 3)
    assert list(labels) == ["label:noun", "label:verb"]
    assert labels["label:noun"].tolist() == [1.0, 0.0, 0.5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a\n1\n2\n", "has 2 rows but the sample has 3 steps"),
        ("a,b\n1,2\n3\n4,5\n", "row 3 has 1 columns"),
        ("a\n1\nx\n2\n", "'x' is not a number"),
        ("a\n1\nnan\n2\n", "NaN or infinite"),
        ("a\n", "needs a header row"),
    ],
)
def test_bad_labels_csv_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_labels_csv(path, 3)


def test_missing_labels_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read labels file"):
        read_labels_csv(tmp_path / "nope.csv", 3)
