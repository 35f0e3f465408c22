"""ui/rendering.py: the HTML of tokens, heads, matrices and candidates, on made-up numbers."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import numpy as np

from model.roles import KINDS, HeadRoles
from serving.labels import visible_whitespace
from serving.originality import CLOSE, NEW
from ui import analysis_rendering, rendering
from ui.role_badges import role_badges


def test_whitespace_and_control_characters_become_visible():
    assert visible_whitespace(" a\nb\tc\x00\x7f\x85é") == "·a↵b⇥c␀␡\\x85é"


def test_token_row_marks_each_kind_and_escapes_text():
    html = rendering.render_token_row(["⟨start⟩", "<b>", "·x"], prompt_length=2, selected=2)
    assert html.count("data-index=") == 3 and "&lt;b&gt;" in html and "<b>" not in html
    assert 'class="pl-chip pl-start"' in html and 'class="pl-chip pl-typed"' in html
    assert 'class="pl-chip pl-written selected" data-index="2"' in html


def test_heads_grid_has_one_strip_per_layer_and_head():
    rows = np.random.default_rng(0).dirichlet(np.ones(6), size=(3, 4))
    html = rendering.render_heads_grid(rows, [f"t{i}" for i in range(6)], position=5)
    assert html.count('class="pl-panel"') == 12 and html.count("data:image/png;base64,") == 24
    # Each strip twice: as computed, and with the start token's share (the sink) hidden.
    weights = re.findall(r'class="pl-strip ([\w-]+)"[^>]*data-w="([^"]*)"', html)
    assert [kind for kind, _ in weights] == ["pl-with-sink", "pl-no-sink"] * 12
    assert all(len(w.split(",")) == 6 for _, w in weights)
    for (_, shown), (_, hidden) in zip(weights[::2], weights[1::2], strict=True):
        seen, rest = np.array(shown.split(","), float), np.array(hidden.split(","), float)
        assert rest[0] == 0
        # Both are rounded to 0.1 for the page: the renormalised share is off by 0.2 at most.
        np.testing.assert_allclose(rest[1:], 100 * seen[1:] / seen[1:].sum(), atol=0.2)
    assert "layer 3" in html and "head 4" in html and "attention weight" in html


def test_matrix_labels_never_overlap_at_the_longest_sequence():
    n, selected = 128, 77
    matrix = np.tril(np.random.default_rng(1).random((n, n)))
    matrix /= matrix.sum(-1, keepdims=True)
    labels = [f"·word{i}" for i in range(n)]
    html = rendering.render_matrix(matrix, labels, selected, layer=1, head=0)
    rows = sorted(float(y) for y in re.findall(r'<text[^>]* y="([\d.]+)"', html))
    assert min(np.diff(rows)) >= 11  # one label per font height (11 px) at most
    assert "·word77" in html and 'class="pl-sel"' in html and "layer 2, head 1" in html
    assert len(re.search(r'data-w="([^"]*)"', html)[1].split(";")) == n
    # The same matrix with the sink hidden: no weight on token 0, the rest renormalised.
    hidden = re.search(r'<image class="pl-no-sink"[^>]*data-w="([^"]*)"', html)[1].split(";")
    row = np.array(hidden[selected].split(","), float)
    assert row[0] == 0 and abs(row.sum() - 100) < 0.5


def test_the_step_card_shows_both_distributions_and_each_candidate_branches():
    rows = [(7, "·cat", 0.5, 0.7), (9, "·dog", 0.2, 0.2), (3, "·&", 0.1, 0.1), (4, "·a", 0.05, 0),
            (5, "·b", 0.01, 0)]  # fmt: skip
    html = analysis_rendering.render_step_card("·dog", 9, 4, 2, 2.32, rows, 0.2, forced=False)
    assert html.count('class="pl-branch"') == 5 and 'data-token-id="7"' in html
    assert html.count("pl-cand-row chosen") == 1 and "<em>written</em>" in html
    assert "50.0%" in html and "70.0%" in html and "·&amp;" in html  # model, sampling, escaped
    assert "Surprisal <b>2.32 bits</b>" in html and "Predicting token 4" in html
    assert "not among these five" not in html
    outside = analysis_rendering.render_step_card("·zebra", 11, 4, 2, 9.9, rows, 0.001, True)
    assert "not among these five: you forced it" in outside and "forced by you" in outside
    assert "You typed this token" in rendering.render_read_token("·cat", 2, "typed")


def test_the_surprisal_strip_darkens_with_surprise_and_marks_only_written_tokens():
    html = rendering.render_token_row(["⟨start⟩", "·a", "·b", "·c"], 2, 3, [0.1, 11.0])
    assert html.count('class="pl-surprise"') == 2 and "surprisal 11.0 bits" in html
    luminance = [
        np.array(re.findall(r"\d+", rendering.surprise_colour(bits)), float)
        @ [0.2126, 0.7152, 0.0722]
        for bits in (0, 3, 6, 9, 12)
    ]
    assert np.all(np.diff(luminance) < 0)


def test_the_knockout_grid_marks_switched_off_heads_and_colours_by_effect():
    importance = np.array([[-1.5, 0.0], [0.4, -0.2]])
    html = analysis_rendering.render_knockout_grid(importance, [(1, 0)], "mean", "·dog")
    assert html.count('class="pl-ko"') == 3 and html.count('class="pl-ko off"') == 1
    assert 'data-layer="1" data-head="0"' in html and "-1.50" in html and "+0.40 ✕" in html
    assert analysis_rendering.effect_colour(-2) == "rgb(178,24,43)"  # hurt: red
    assert analysis_rendering.effect_colour(2) == "rgb(33,102,172)"  # helped: blue


def test_colours_darken_as_attention_grows():
    rgb = rendering.colours(np.linspace(0, 1, 11)).astype(float)
    luminance = rgb @ [0.2126, 0.7152, 0.0722]
    assert np.all(np.diff(luminance) < 0)


def test_the_nearest_joke_is_shown_as_text_with_its_verdict():
    html = rendering.render_originality(CLOSE, 0.93, "<b>A</b> joke\x07", None)
    assert "<strong>Close to a known joke</strong>" in html and "similarity 0.93" in html
    assert "&lt;b&gt;A&lt;/b&gt; joke␇" in html and "pl-origin-close" in html
    assert "pl-origin-new" in rendering.render_originality(NEW, 0.2, "x", None)


def test_every_head_gets_a_badge_with_its_role_its_scores_and_its_pattern():
    layers, heads, size = 2, 2, 5
    scores = {kind: np.full((layers, heads), 0.25) for kind in KINDS}
    scores["induction"][1, 0] = 0.875
    roles = HeadRoles(
        scores=scores,
        roles=[["previous-token", None], ["induction", "diffuse"]],
        sinks=np.array([[False, True], [False, False]]),
        thumbnails=np.tile(np.eye(size), (layers, heads, 1, 1)),
        thumbnail_tokens={"repeat": list(range(size)), "text": list(range(size))},
    )
    rows = np.full((layers, heads, 4), 0.25)
    grid = rendering.render_heads_grid(rows, ["a", "b", "c", "d"], 3, role_badges(roles))
    badges = re.findall(r'<span class="pl-role pl-role-(\w+)" title="([^"]*)"><img src="data:'
                        r'image/png;base64,[^"]+" alt="">([^<]*)(?:<a class="pl-try" href="\?'
                        r'prompt=([^"]+)"[^>]*>try it</a>)?</span>', grid)  # fmt: skip
    assert [(kind, text.strip()) for kind, _, text, _ in badges] == [
        ("prev", "prev 0.25"), ("mixed", "mixed · sink 0.25"), ("induct", "induct 0.88"),
        ("diffuse", "diffuse 0.25"),
    ]  # fmt: skip
    # "Try it" links the roles that a prompt shows at work: for induction, a repeated phrase.
    tried = {kind: unquote_plus(prompt) for kind, _, _, prompt in badges if prompt}
    assert set(tried) == {"prev", "induct", "diffuse"}  # a mixed head has no role to try
    assert tried["induct"].count("Knock knock. Who") == 2
    tip = badges[2][1]
    assert "induction 0.88" in tip and "repeated random tokens" in tip
    assert "Sink" in badges[1][1] and "validation jokes" in badges[1][1]
    assert "role, found on probe texts" in grid
    # A model folder without roles: no badge.
    assert "pl-role" not in rendering.render_heads_grid(rows, ["a", "b", "c", "d"], 3)
