import json

import numpy as np

from data.offensive import MODEL_FORMAT, MODEL_PATH, is_offensive, offensive_probability

OFFENSIVE = [
    "You are a stupid fucking idiot.",
    "Shut up, you worthless piece of shit.",
    "What an ugly bitch, go to hell.",
]
CLEAN = [
    "Why did the scarecrow win an award? He was outstanding in his field.",
    "I told my computer a joke about UDP, but I am not sure it got it.",
    "The librarian laughed quietly at the pun about overdue books.",
]


def test_clearly_offensive_and_clearly_clean_sentences():
    assert is_offensive(OFFENSIVE).all()
    assert not is_offensive(CLEAN).any()


def test_shapes_and_types():
    probabilities = offensive_probability(OFFENSIVE + CLEAN)
    assert probabilities.shape == (len(OFFENSIVE) + len(CLEAN),)
    assert probabilities.dtype == np.float64
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert is_offensive(CLEAN).dtype == np.bool_
    assert offensive_probability([]).shape == (0,)


def test_empty_and_unknown_word_texts_are_clean():
    probabilities = offensive_probability(["", "   ", "xqzv blorptang"])
    assert np.isfinite(probabilities).all()
    assert (probabilities < 0.5).all()
    assert probabilities[0] == probabilities[2]  # no known words: only the intercepts count


def test_a_text_scores_the_same_alone_and_in_a_batch():
    batch = offensive_probability(CLEAN + OFFENSIVE)
    alone = np.array([offensive_probability([text])[0] for text in CLEAN + OFFENSIVE])
    np.testing.assert_allclose(batch, alone, rtol=0, atol=1e-12)


def test_case_and_punctuation_do_not_matter():
    first, second = offensive_probability(["SHUT UP, IDIOT!!!", "shut up idiot"])
    assert first == second


def test_threshold_is_adjustable():
    assert is_offensive(CLEAN, threshold=0.0).all()
    assert not is_offensive(OFFENSIVE, threshold=1.0).any()


def test_model_file_is_plain_json():
    spec = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    assert spec["format"] == MODEL_FORMAT
    assert len(spec["document_frequency"]) == len(spec["vocabulary"].split(" "))
