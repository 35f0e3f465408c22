"""serving/explainer.py and the explainer's endpoints in serving/api.py (/lens, /knockout,
/importance, /branch): what they answer for a joke /generate wrote, and what they refuse.
(tests/test_inspect.py tests the model-level analyses they are built on.)"""

from __future__ import annotations

import json
import logging
import shutil
import types

import jax
import numpy as np
import pytest

import serving.api
import serving.explainer
from model.checkpoint import HEAD_MEANS, save_head_means, sign
from model.generate import SamplingSettings, prefill_lengths
from model.knockout import MEAN, ZERO
from serving.api import (
    attribution_json,
    branch_json,
    flow_json,
    importance_json,
    knockout_json,
    lens_json,
    trunk_joke,
)
from serving.errors import RequestError
from serving.explainer import Explainer, surprisal_bits, written
from serving.validation import validate_choice, validate_heads, validate_step, validate_token_id
from serving.writer import JokeWriter

# prompt, temperature, top_k, top_p, max_new_tokens, seed, clean: as /generate takes them
SENT = ("Why did the duck", 1.0, 0, 1.0, 12, 3, False)
# A prompt so long that the joke is padded to the longest length, the context's 64.
LONG = ("Why did the duck cross the road? " * 20, 1.0, 0, 1.0, 16, 5, False)
STEP = 2
ENDPOINTS = [  # each with valid values for its other parameters
    (lens_json, {}),
    (knockout_json, {"heads": [], "mode": ZERO}),
    (importance_json, {"mode": ZERO}),
    (branch_json, {"token_id": 5}),
    (flow_json, {"threshold": 0.04}),
    (attribution_json, {"integrated": True}),
]


def classifier(flag: bool):
    """Stands in for data.offensive.is_offensive: flags every text, or none."""
    return lambda texts: np.full(len(texts), flag)


def refused(function, *args, **kwargs) -> str:
    """The message of the RequestError function(*args, **kwargs) raises: one short line."""
    with pytest.raises(RequestError) as error:
        function(*args, **kwargs)
    message = error.value.message
    assert "\n" not in message and len(message) < 400
    return message


@pytest.fixture(scope="module")
def ask(writer, explainer):
    """An endpoint called as a program calls it, by default for the joke SENT writes."""
    return lambda endpoint, sent=SENT, **asked: endpoint(writer, explainer, *sent, **asked)


@pytest.fixture(scope="module")
def joke(writer):
    return trunk_joke(writer, *SENT)


@pytest.fixture(scope="module")
def with_means(model_folder, writer, tmp_path_factory):
    """An Explainer on a copy of the tiny folder that ships (made-up) mean head outputs."""
    folder = shutil.copytree(model_folder, tmp_path_factory.mktemp("means") / "model")
    c = writer.config
    means = np.random.default_rng(0).normal(0, 1, (c.n_layer, c.n_head, c.d_head))
    save_head_means(folder, means.astype(np.float32))
    return Explainer(JokeWriter(folder)), means.astype(np.float32)


@pytest.fixture(scope="module")
def without_means(explainer, model_folder, tmp_path_factory) -> Explainer:
    """An Explainer on a folder without mean head outputs (the tiny one, if it has none)."""
    if explainer.head_means is None:
        return explainer
    folder = shutil.copytree(model_folder, tmp_path_factory.mktemp("plain") / "model")
    (folder / HEAD_MEANS).unlink()
    sign(folder)
    return Explainer(JokeWriter(folder))


def test_the_explainer_analyses_the_very_joke_generate_wrote(writer, joke):
    shown, _ = writer.write_checked(writer.request(*SENT))
    assert joke.generation.token_ids == shown.generation.token_ids and joke.text == shown.text
    g = joke.generation
    assert written(joke) == g.token_ids[g.prompt_length :] and len(written(joke)) == 12
    np.testing.assert_allclose(surprisal_bits(g), -np.log2(g.chosen_probabilities), rtol=1e-6)
    bits = surprisal_bits(types.SimpleNamespace(chosen_probabilities=[1.0, 0.5, 0.125, 0.0]))
    np.testing.assert_allclose(bits[:3], [0.0, 1.0, 3.0], atol=1e-12)
    assert np.isfinite(bits[3]) and bits[3] > 90  # p = 0 is clipped, not infinite


@pytest.mark.parametrize("step", [0, STEP, 11])
def test_the_lens_reads_every_layer_and_its_last_layer_is_the_models_output(
    writer, ask, joke, step
):
    c, g, chosen = writer.config, joke.generation, written(joke)[step]
    answer = ask(lens_json, step=step)
    json.dumps(answer, allow_nan=False)
    layers = answer["layers"]
    assert answer["step"] == step and answer["seed"] == 3
    assert [layer["layer"] for layer in layers] == list(range(c.n_layer + 1))
    assert answer["predicting"] == answer["written_tokens"][step]
    for layer in layers:
        probabilities = [guess["probability"] for guess in layer["top"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert type(layer["chosen_rank"]) is int and 0 <= layer["chosen_rank"] < c.vocab_size
    assert layers[-1]["chosen_probability"] == pytest.approx(g.chosen_probabilities[step], abs=1e-4)
    commitment, tops = answer["commitment_layer"], [layer["top"][0]["token_id"] for layer in layers]
    if commitment is None:
        assert tops[-1] != chosen
    else:
        assert 0 <= commitment <= c.n_layer and all(t == chosen for t in tops[commitment:])
        assert commitment == 0 or tops[commitment - 1] != chosen
    assert np.shape(answer["heatmap"]) == (c.n_layer + 1, len(written(joke)))


@pytest.mark.parametrize("prompt_length", [4, 47])  # 47: the joke fills the whole context
def test_the_heatmap_holds_each_steps_lens_and_its_last_row_the_jokes_probabilities(
    writer, explainer, prompt_length
):
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=16, seed=0)
    g = writer.generator.generate(list(range(1, prompt_length + 1)), settings)
    assert prompt_length < 47 or len(g.token_ids) == writer.config.block_size
    heatmap = explainer.lens(g.token_ids, g.prompt_length, 0).heatmap
    np.testing.assert_allclose(heatmap[-1], g.chosen_probabilities, rtol=1e-3)
    for step, (_, probabilities) in enumerate(g.candidates):
        view = explainer.lens(g.token_ids, g.prompt_length, step)
        np.testing.assert_allclose(view.heatmap, heatmap, rtol=1e-5)
        lens = [layer.chosen_probability for layer in view.layers]
        np.testing.assert_allclose(lens, heatmap[:, step], rtol=1e-4)
        top = [guess.probability for guess in view.layers[-1].top]
        np.testing.assert_allclose(top, probabilities[:3], rtol=1e-3)


def test_knocking_out_no_head_changes_nothing_and_rewrites_the_same_joke(ask, joke):
    g = joke.generation
    answer = ask(knockout_json, step=STEP, heads=[], mode=ZERO)
    assert answer["before"] == answer["after"] and answer["change_bits"] == 0
    assert answer["heads"] == [] and answer["mode"] == ZERO
    before = answer["chosen_probability_before"]
    assert before == answer["chosen_probability_after"]
    assert before == pytest.approx(g.chosen_probabilities[STEP], abs=1e-4)
    ids, probabilities = g.candidates[STEP]  # /generate's top five at that step
    assert [c["token_id"] for c in answer["before"]] == ids
    np.testing.assert_allclose([c["probability"] for c in answer["before"]], probabilities, 0, 1e-4)
    rewritten = answer["rewritten"]
    assert rewritten["token_ids"] == g.token_ids and rewritten["text"] == joke.text
    assert rewritten["written"] == joke.written


def test_knocking_out_heads_changes_the_top_five_and_keeps_the_tokens_before_the_step(
    writer, ask, joke
):
    c, kept = writer.config, joke.generation.prompt_length + STEP
    every_head = [[layer, head] for layer in range(c.n_layer) for head in range(c.n_head)]
    changed = 0
    for heads in [*([pair] for pair in every_head), every_head]:
        answer = ask(knockout_json, step=STEP, heads=heads, mode=ZERO)
        json.dumps(answer, allow_nan=False)
        assert answer["heads"] == heads and answer["change_bits"] != 0
        changed += answer["after"] != answer["before"]
        assert answer["rewritten"]["token_ids"][:kept] == joke.generation.token_ids[:kept]
        # The same seed: the rewrite is the same every time.
        assert ask(knockout_json, step=STEP, heads=heads, mode=ZERO) == answer
    assert changed > 0


def test_the_rewrite_draws_its_first_new_token_from_the_knocked_out_model(explainer, joke):
    g, heads = joke.generation, [(0, 1), (1, 0)]
    view = explainer.knockout(g.token_ids, g.prompt_length, STEP, heads, ZERO)
    expected = np.log2(view.chosen_after / view.chosen_before)
    assert view.change_bits == pytest.approx(expected, abs=1e-5)
    assert view.chosen_before == pytest.approx(g.chosen_probabilities[STEP], rel=1e-3)
    rewritten = explainer.rewrite(joke, STEP, heads, ZERO).generation
    ids, probabilities = rewritten.candidates[STEP]
    assert ids == [guess.token_id for guess in view.after]
    np.testing.assert_allclose(probabilities, [guess.probability for guess in view.after], 1e-3)
    assert rewritten.forced == [True] * STEP + [False] * (len(rewritten.forced) - STEP)


def test_the_importance_map_is_the_effect_of_each_single_head(writer, ask):
    c = writer.config
    answer = ask(importance_json, step=STEP, mode=ZERO)
    json.dumps(answer, allow_nan=False)
    assert answer["step"] == STEP and answer["mode"] == ZERO
    assert np.shape(answer["change_bits"]) == (c.n_layer, c.n_head)
    for layer in range(c.n_layer):
        for head in range(c.n_head):
            single = ask(knockout_json, step=STEP, heads=[[layer, head]], mode=ZERO)
            assert answer["change_bits"][layer][head] == pytest.approx(
                single["change_bits"], abs=1e-3
            )


def test_mean_ablation_uses_the_folders_mean_head_outputs(with_means, joke):
    explainer, means = with_means
    writer, g = explainer.writer, joke.generation
    assert explainer.modes == (ZERO, MEAN)
    np.testing.assert_array_equal(explainer.replacement(MEAN), means)
    grids = {m: explainer.importance(g.token_ids, g.prompt_length, STEP, m) for m in (ZERO, MEAN)}
    assert not np.allclose(grids[ZERO], grids[MEAN], atol=1e-4)
    for layer, head in [(0, 0), (1, 1)]:
        view = explainer.knockout(g.token_ids, g.prompt_length, STEP, [(layer, head)], MEAN)
        assert view.change_bits == pytest.approx(grids[MEAN][layer, head], abs=1e-4)
    answer = knockout_json(writer, explainer, *SENT, step=STEP, heads=[[1, 0]], mode=MEAN)
    assert answer["mode"] == MEAN
    assert answer["change_bits"] == pytest.approx(grids[MEAN][1, 0], abs=1e-3)


def test_a_folder_without_head_means_offers_only_zero_ablation(without_means, joke):
    g, explainer = joke.generation, without_means
    assert explainer.head_means is None and explainer.modes == (ZERO,)
    fix = "python -m training.head_analyses"
    assert fix in refused(explainer.replacement, MEAN)
    assert fix in refused(explainer.importance, g.token_ids, g.prompt_length, STEP, MEAN)
    assert fix in refused(explainer.knockout, g.token_ids, g.prompt_length, STEP, [(0, 0)], MEAN)


@pytest.mark.parametrize("endpoint", [knockout_json, importance_json])
def test_asking_the_api_for_mean_ablation_without_head_means_names_the_fix(without_means, endpoint):
    extra = {"heads": [[0, 0]]} if endpoint is knockout_json else {}
    writer = without_means.writer
    message = refused(endpoint, writer, without_means, *SENT, step=STEP, mode=MEAN, **extra)
    assert message.startswith("mode")
    assert "training.head_analyses" in message, message


def test_a_branch_keeps_the_tokens_before_the_step_and_writes_on_from_the_forced_one(
    writer, ask, joke
):
    g = joke.generation
    for step in (0, STEP, 11):
        own = ask(branch_json, step=step, token_id=written(joke)[step])
        assert own["token_ids"] == g.token_ids and own["text"] == joke.text  # the joke itself
        assert own["forced"] == [True] * (step + 1) + [False] * (11 - step)
        skip = (written(joke)[step], writer.end_of_joke)
        other = next(i for i in g.candidates[step][0] if i not in skip)
        answer = ask(branch_json, step=step, token_id=other)
        json.dumps(answer, allow_nan=False)
        position = g.prompt_length + step
        assert answer["step"] == step and answer["token_id"] == other and answer["seed"] == 3
        assert answer["token_ids"][:position] == g.token_ids[:position]
        assert answer["token_ids"][position] == other and answer["nearest"] is None
        forced = answer["forced"]
        assert forced[: step + 1] == [True] * (step + 1) and not any(forced[step + 1 :])
        assert ask(branch_json, step=step, token_id=other) == answer


def test_a_branch_refuses_the_end_of_joke_token(writer, ask):
    message = refused(ask, branch_json, step=STEP, token_id=writer.end_of_joke)
    assert message.startswith("token_id is the end-of-joke token")


STEPS = {"negative": -1, "past_the_end": 12, "huge": 10**400, "text": "3", "fraction": 2.5,
         "bool": True, "none": None, "list": [1]}  # fmt: skip


@pytest.mark.parametrize("step", STEPS.values(), ids=STEPS.keys())
def test_a_step_outside_the_written_tokens_or_not_a_whole_number_is_refused(ask, step):
    for endpoint, extra in ENDPOINTS:
        message = refused(ask, endpoint, step=step, **extra)
        assert message.startswith("step must be a whole number from 0") and "to 11" in message
    assert validate_step(2.0, 12) == 2 and type(validate_step(2.0, 12)) is int


HEADS = [[[0]], [[0, 99]], [[2, 0]], [[-1, 0]], [[0, 0], [0, 0]], "0,0", [[0, 0]] * 10**6,
         [[0, True]], [[0.0, 1]], [[0, 0, 0]], None, [["<b>", 0]]]  # fmt: skip


@pytest.mark.parametrize("heads", HEADS, ids=range(len(HEADS)))
def test_malformed_heads_are_refused_naming_heads(ask, heads):
    message = refused(ask, knockout_json, step=STEP, heads=heads, mode=ZERO)
    assert message.startswith("heads must") and "<b>" not in message
    assert validate_heads([[1, 0], (0, 1)], 2, 2) == [(1, 0), (0, 1)]


@pytest.mark.parametrize("mode", ["half", "ZERO", None, 0, ["zero"]])
def test_an_unknown_mode_is_refused_naming_mode(ask, mode):
    for endpoint, extra in ENDPOINTS[1:3]:
        message = refused(ask, endpoint, step=STEP, **{**extra, "mode": mode})
        assert message.startswith("mode must be one of 'zero'")
    assert validate_choice("mode", "mean", (ZERO, MEAN)) == MEAN


@pytest.mark.parametrize("token_id", [-1, "vocab", 2.5, "5", True, None])
def test_a_token_id_outside_the_vocabulary_is_refused_naming_token_id(writer, ask, token_id):
    token_id = writer.config.vocab_size if token_id == "vocab" else token_id
    message = refused(ask, branch_json, step=STEP, token_id=token_id)
    assert message.startswith("token_id must be a whole number from 0 to")
    assert validate_token_id(5.0, 10) == 5 and type(validate_token_id(5.0, 10)) is int


def test_a_joke_the_model_ended_at_once_has_no_step_to_analyse(writer, ask):
    assert "no written tokens" in refused(validate_step, 0, 0)
    for seed in range(64):  # a seed whose joke ends before its first token, if there is one
        sent = ("", 1.0, 0, 1.0, 1, seed, False)
        if not written(trunk_joke(writer, *sent)):
            break
    else:
        return  # none for these weights: validate_step(0, 0) above covers it
    for endpoint, extra in ENDPOINTS:
        assert "no written tokens" in refused(ask, endpoint, sent, step=0, **extra)


def test_clean_mode_refuses_a_flagged_joke_and_a_flagged_new_version(ask, monkeypatch):
    sent = ("", 1.0, 0, 1.0, 12, 3, True)  # no prompt: the request itself is never flagged
    monkeypatch.setattr(serving.api, "is_unfit", classifier(True))
    message = refused(ask, lens_json, sent, step=0)
    assert "seed 3" in message and "flagged as offensive" in message and "clean=False" in message
    monkeypatch.setattr(serving.api, "is_unfit", classifier(False))
    monkeypatch.setattr(serving.explainer, "is_unfit", classifier(False))
    assert ask(lens_json, sent, step=0)["step"] == 0
    assert ask(knockout_json, sent, step=1, heads=[[0, 0]], mode=ZERO)["step"] == 1
    monkeypatch.setattr(serving.explainer, "is_unfit", classifier(True))
    for endpoint, extra in [ENDPOINTS[1], ENDPOINTS[3]]:  # they write a new version
        with pytest.raises(RequestError, match="flagged as offensive") as error:
            ask(endpoint, sent, step=1, **extra)
        assert error.value.title == "Offensive version"
    assert ask(importance_json, sent, step=1, mode=ZERO)["step"] == 1  # writes nothing new


def test_no_joke_length_compiles_anything_new_after_warm_up(writer, explainer, ask, caplog):
    writer.warm_up()
    explainer.warm_up()
    jitted = [explainer._lens, explainer._effect, explainer._importance, explainer._flow]
    jitted += [explainer._gradient, explainer._integrated]
    jitted += [writer.generator._prefill, writer.generator._step]
    sizes = [f._cache_size() for f in jitted]
    assert sizes[:5] == [1] * 5  # each analysis is compiled for one length, the context,
    assert sizes[5] == len(explainer.path_lengths) == 3  # but integrated gradients
    lengths = set()
    caplog.set_level(logging.WARNING)
    jax.config.update("jax_log_compiles", True)
    try:
        for prompt, new in [("", 12), ("duck " * 20, 8), (LONG[0], 16)]:
            sent = (prompt, 1.0, 0, 1.0, new, 7, False)
            g = trunk_joke(writer, *sent).generation
            lengths.add(len(g.token_ids))
            for step in (0, len(g.token_ids) - g.prompt_length - 1):
                for endpoint, extra in ENDPOINTS:
                    extra = {**extra, "heads": [[1, 1]]} if endpoint is knockout_json else extra
                    ask(endpoint, sent, step=step, **extra)
        compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
        seen = len(caplog.records)
        jax.jit(lambda x: x + 1)(np.float32(1))  # the log does see a compilation
        assert any("Compiling" in r.getMessage() for r in caplog.records[seen:])
    finally:
        jax.config.update("jax_log_compiles", False)
    buckets = {next(n for n in prefill_lengths(64) if n >= length) for length in lengths}
    assert buckets == {16, 32, 64}, lengths
    assert [f._cache_size() for f in jitted] == sizes
    assert compiled == []


def test_an_analysis_asked_during_the_background_warm_up_waits_for_it(writer):
    explainer = Explainer(writer)  # its own programs: nothing compiled yet
    seconds = []
    thread = explainer.start_warm_up(done=seconds.append)
    ids = [writer.end_of_joke] * 2
    view = explainer.lens(ids, 1, 0)  # asked at once, as a visitor's first click may be
    # Integrated gradients compile last in the warm-up: the lens came back after them, so it
    # waited for the warm-up instead of compiling its program beside it.
    assert explainer._integrated._cache_size() == len(explainer.path_lengths)
    assert explainer._lens._cache_size() == 1
    thread.join(timeout=120)
    assert not thread.is_alive() and len(seconds) == 1 and seconds[0] > 0
    assert view.step == 0 and len(view.layers) == writer.config.n_layer + 1
