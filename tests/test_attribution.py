"""Attribution (model/attribution.py): gradient x input is the derivative it claims to be,
integrated gradients add up to the change they explain, and the future gets nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model.attribution import (
    GRID,
    STEPS,
    chosen_log_prob,
    gradient_times_input,
    integrated_gradients,
    path_points,
    token_and_position_parts,
)
from tests.test_inspect import VARIANTS, make_model, tokens

POSITION, CHOSEN = 6, 7  # read after token 6, the probability of token id 7
BLANK = jnp.int32(0)  # integrated gradients' baseline token


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_parts_of_the_input_add_up_to_the_embedding(variant):
    model, t = make_model(variant), tokens(10)
    token_part, position_part = token_and_position_parts(model, t)
    np.testing.assert_allclose(token_part + position_part, model.embed(t, jnp.arange(10)))
    if variant != "gpt2":  # RoPE: the position acts inside attention, not on the input
        assert not np.any(position_part)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_f_is_the_models_own_log_probability(variant):
    """chosen_log_prob runs its last block for one token only: it must still be the model's."""
    model, t = make_model(variant), tokens(10)
    logits, _ = model(t)
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))  # (1, T, V)
    inputs = model.embed(t, jnp.arange(10))
    for position in (0, POSITION, 9):
        f = chosen_log_prob(model, inputs, jnp.int32(position), CHOSEN)
        assert float(f[0]) == pytest.approx(log_probs[0, position, CHOSEN], abs=1e-5), position


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_times_input_is_the_derivative_along_each_embedding(variant):
    model, t = make_model(variant), tokens(10)
    attribution = np.asarray(gradient_times_input(model, t, jnp.int32(POSITION), CHOSEN))
    assert attribution.shape == (10,)
    assert np.all(attribution[POSITION + 1 :] == 0)  # later tokens cannot matter
    embeddings, position_part = token_and_position_parts(model, t)

    def f(scale_token: int, epsilon: float) -> float:
        scaled = embeddings.at[0, scale_token].multiply(1 + epsilon) + position_part
        return float(chosen_log_prob(model, scaled, jnp.int32(POSITION), CHOSEN)[0])

    for j in range(POSITION + 1):  # central differences: d f(e_j (1 + eps)) / d eps at 0
        estimate = (f(j, 1e-2) - f(j, -1e-2)) / 2e-2
        assert attribution[j] == pytest.approx(estimate, rel=0.05, abs=2e-3), j


def test_integrated_gradients_add_up_to_the_change_they_explain():
    model, t = make_model(), tokens(10)
    integrated = nnx.jit(integrated_gradients, static_argnames="steps")
    few = integrated(model, t, jnp.int32(POSITION), CHOSEN, BLANK, steps=2)
    many = integrated(model, t, jnp.int32(POSITION), CHOSEN, BLANK, steps=64)
    for result in (few, many):
        gap = float(result.attribution.sum() - result.change)
        assert float(result.gap) == pytest.approx(gap, abs=1e-5)
        assert np.all(np.asarray(result.attribution)[POSITION + 1 :] == 0)
    assert abs(float(many.change)) > 0.1  # there is something to explain
    # Completeness: with enough steps, the attributions add up to the change.
    assert abs(float(many.gap)) < 0.02 * abs(float(many.change)) + 1e-3
    assert abs(float(many.gap)) < abs(float(few.gap))
    # The change is f(real) - f(the blank token in every place), computed directly.
    real = chosen_log_prob(model, model.embed(t, jnp.arange(10)), jnp.int32(POSITION), CHOSEN)
    blank = jnp.full_like(t, BLANK)
    none = chosen_log_prob(model, model.embed(blank, jnp.arange(10)), jnp.int32(POSITION), CHOSEN)
    assert float(many.change) == pytest.approx(float(real[0] - none[0]), abs=1e-5)
    # A token that is the blank itself gets exactly 0.
    with_blank = t.at[0, 2].set(BLANK)
    result = integrated(model, with_blank, jnp.int32(POSITION), CHOSEN, BLANK, steps=4)
    assert float(result.attribution[2]) == 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_integrated_gradients_need_no_token_after_the_position(variant):
    """The explainer cuts the joke to the shortest compiled length that holds the position:
    the causal mask makes that exact."""
    model, t = make_model(variant), tokens(16)
    integrated = nnx.jit(integrated_gradients, static_argnames="steps")
    whole = integrated(model, t, jnp.int32(POSITION), CHOSEN, BLANK, steps=4)
    cut = integrated(model, t[:, : POSITION + 1], jnp.int32(POSITION), CHOSEN, BLANK, steps=4)
    np.testing.assert_allclose(
        whole.attribution[: POSITION + 1], cut.attribution, rtol=1e-4, atol=1e-6
    )
    assert float(whole.change) == pytest.approx(float(cut.change), abs=1e-5)


def test_path_points_are_equally_spaced_where_f_is_flat():
    alphas, widths = path_points(jnp.zeros(9), steps=8)
    np.testing.assert_allclose(alphas, (np.arange(8) + 0.5) / 8, atol=1e-6)
    np.testing.assert_allclose(widths, np.full(8, 1 / 8), atol=1e-6)


@pytest.mark.parametrize("even_share", [0.1, 0.3, 1.0])
def test_path_points_crowd_where_f_climbs(even_share):
    # f along the path: flat, then a climb between the 6th and 7th look (alpha 5/8 to 6/8).
    values = jnp.asarray([0, 0, 0, 0, 0, 0.1, 5, 5.1, 5.1], jnp.float32)
    alphas, widths = path_points(values, steps=8, even_share=even_share)
    assert float(widths.sum()) == pytest.approx(1, abs=1e-6)
    assert np.all(np.diff(np.asarray(alphas)) > 0) and np.all(np.asarray(widths) > 0)
    in_climb = int(np.sum((np.asarray(alphas) > 5 / 8) & (np.asarray(alphas) < 6 / 8)))
    # The climb holds 4.9 / 5.1 of the change, so about that share of the uneven points
    # (and its 1/8 of the even ones).
    expected = 8 * ((1 - even_share) * 4.9 / 5.1 + even_share / 8)
    assert abs(in_climb - expected) <= 1


def test_points_placed_by_the_change_integrate_a_steep_climb_better():
    """On a path like the model's (flat, then a steep climb), the default STEPS points placed
    by a GRID-point look at f integrate f's derivative far closer than STEPS equally spaced
    points."""

    def f(alpha):  # a logistic climb of height 10 centred at alpha = 0.7
        return 10 / (1 + np.exp(-(alpha - 0.7) * 60))

    def df(alpha):
        return 60 * f(alpha) * (1 - f(alpha) / 10)

    exact = f(1.0) - f(0.0)
    looks = jnp.asarray(f(np.linspace(0, 1, GRID)), jnp.float32)
    alphas, widths = path_points(looks, steps=STEPS)
    placed = float(np.sum(np.asarray(widths) * df(np.asarray(alphas, np.float64))))
    even = float(np.mean(df((np.arange(STEPS) + 0.5) / STEPS)))
    assert abs(placed - exact) < 0.1 * exact
    assert abs(placed - exact) < 0.25 * abs(even - exact)
