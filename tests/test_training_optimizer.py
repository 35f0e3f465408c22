"""training/optimizer.py and training/average.py: which parameters Muon and AdamW update, the
schedules, and the moving average of the weights (its maths, its checkpoint, its export)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from optax.contrib import MuonDimensionNumbers, scale_by_muon

from model.config import GPTConfig
from model.gpt import GPT
from training.average import averaged_model_state, track_average
from training.config import TrainConfig, TrainError
from training.export import exported_figures, exported_weights
from training.optimizer import (
    check_settings,
    make_optimizer,
    make_schedule,
    param_labels,
    settles_at,
    stacked_by_shape,
)
from training.state import Checkpoints

# Untied embeddings (an lm_head), a learned position table and query/key norms: every kind
# of parameter the router must send to AdamW.
TINY = GPTConfig(
    vocab_size=48,
    block_size=16,
    n_layer=2,
    n_head=2,
    d_model=32,
    d_ff=64,
    positional="learned",
    tie_embeddings=False,
    qk_norm=True,
)
# AdamW and Muon at very different rates, no decay and no clipping: an update tells its rule.
ROUTING = TrainConfig(
    optimizer="muon",
    steps=10,
    warmup_steps=0,
    learning_rate=1e-3,
    muon_learning_rate=0.05,
    weight_decay=0.0,
    grad_clip=1e9,
)


def names(path: tuple) -> tuple:
    """A flattened nnx state path as plain names: ("blocks", 0, "attention", ...), without
    the nnx.Variable's own attribute that holds its array."""
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def flat(tree) -> dict[tuple, np.ndarray]:
    return {names(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def params(model: GPT) -> dict[tuple, np.ndarray]:
    return flat(nnx.state(model, nnx.Param))


def test_muon_gets_the_block_matrices_and_adamw_everything_else():
    model = GPT(TINY, rngs=nnx.Rngs(0))
    flat_labels = jax.tree_util.tree_flatten_with_path(param_labels(nnx.state(model, nnx.Param)))
    labels = {names(path): label for path, label in flat_labels[0]}
    shapes = {path: value.shape for path, value in params(model).items()}
    assert labels.keys() == shapes.keys()
    for path, label in labels.items():
        in_blocks_matrix = path[0] == "blocks" and len(shapes[path]) == 2
        assert label == ("muon" if in_blocks_matrix else "adam"), path
    for path in [
        ("token_embedding", "embedding"),
        ("positional", "table", "embedding"),
        ("lm_head", "kernel"),
        ("final_norm", "scale"),
        ("blocks", 0, "attention", "query", "bias"),
        ("blocks", 0, "attention_norm", "scale"),
    ]:
        assert labels[path] == "adam", path
    muon = {path[2:] for path, label in labels.items() if label == "muon"}
    for layer in ("query", "key", "value", "output"):
        assert ("attention", layer, "kernel") in muon
    assert len([p for p in muon if p[0] == "feed_forward"]) >= 2
    assert {p[0] for p in labels if labels[p] == "muon"} == {"blocks"}
    assert sum(label == "muon" for label in labels.values()) == TINY.n_layer * len(muon)


def training_state(config: TrainConfig, model_config: GPTConfig = TINY):
    """A tiny model's (model, optimizer) graphdef and state, and one optimizer update of that
    state as a compiled function of (state, gradients)."""
    model = GPT(model_config, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(
        (model, nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param))
    )

    @jax.jit
    def update(state: nnx.State, grads: nnx.State) -> nnx.State:
        model, optimizer = nnx.merge(graphdef, state)
        optimizer.update(model, grads, total_steps=config.steps)
        return nnx.split((model, optimizer))[1]

    return graphdef, state, update


def state_params(graphdef: nnx.GraphDef, state: nnx.State) -> dict[tuple, np.ndarray]:
    return params(nnx.merge(graphdef, state)[0])


def zero_grads(graphdef: nnx.GraphDef, state: nnx.State) -> nnx.State:
    """Zero gradients in new Variables (the state's own are left alone)."""
    return jax.tree.map(jnp.zeros_like, nnx.state(nnx.merge(graphdef, state)[0], nnx.Param))


@pytest.fixture(scope="module")
def routing():
    return training_state(ROUTING)


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (("blocks", 1, "attention", "query", "kernel"), "muon"),
        (("blocks", 0, "attention", "value", "kernel"), "muon"),
        (("blocks", 0, "feed_forward"), "muon"),  # its first kernel (widening, scaled)
        (("token_embedding", "embedding"), "adam"),
        (("positional", "table", "embedding"), "adam"),
        (("lm_head", "kernel"), "adam"),
        (("blocks", 0, "attention", "output", "bias"), "adam"),
    ],
)
def test_one_update_moves_only_the_leaf_with_a_gradient_by_its_rule(routing, path, rule):
    graphdef, state, update = routing
    before = state_params(graphdef, state)
    if path[-1] == "feed_forward":  # whatever the feed-forward's first kernel is called
        path = next(p for p in before if p[:3] == path and p[-1] == "kernel")
    grads = zero_grads(graphdef, state)
    shape = before[path].shape
    rng = np.random.default_rng(0)
    # A rank-1 gradient: AdamW's first step is lr * sign(g) in every entry; Muon's is one
    # orthogonalised direction with spectral norm about its rate (times its width scaling).
    gradient = np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1:] or (1,)))
    node = grads
    for key in path:
        node = node[key]
    node[...] = jnp.asarray(gradient.reshape(shape), jnp.float32)

    moved = {
        p: after - before[p] for p, after in state_params(graphdef, update(state, grads)).items()
    }
    assert all(not delta.any() for p, delta in moved.items() if p != path)
    delta = moved[path]
    if rule == "adam":
        np.testing.assert_allclose(np.abs(delta), ROUTING.learning_rate, rtol=1e-3)
    else:
        singular = np.linalg.svd(delta, compute_uv=False)
        width = np.sqrt(max(1.0, shape[1] / shape[0]))
        assert 0.5 < singular[0] / (ROUTING.muon_learning_rate * width) < 1.5
        assert singular[1] < 1e-3 * singular[0]  # still rank 1
        assert not np.allclose(np.abs(delta), np.abs(delta).mean())  # not a sign update


def test_both_learning_rates_follow_the_schedule():
    # With a warmup both rules start at rate 0: the first update moves nothing at all.
    graphdef, state, update = training_state(
        dataclasses.replace(ROUTING, warmup_steps=4, schedule="wsd")
    )
    grads = jax.tree.map(jnp.ones_like, zero_grads(graphdef, state))
    before = state_params(graphdef, state)
    state = update(state, grads)
    assert all((state_params(graphdef, state)[p] == before[p]).all() for p in before)
    after = state_params(graphdef, update(state, grads))
    labels = jax.tree.leaves(param_labels(zero_grads(graphdef, state)))
    assert all((after[p] != before[p]).any() for p in before)
    assert {"muon", "adam"} == set(labels)


def test_a_few_muon_steps_lower_the_loss_more_than_adamw_on_the_rest_alone():
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, TINY.vocab_size, (4, TINY.block_size + 1)), jnp.int32)

    def losses(muon_learning_rate: float) -> list[float]:
        model = GPT(dataclasses.replace(TINY, tie_embeddings=True), rngs=nnx.Rngs(0))
        config = TrainConfig(
            optimizer="muon",
            steps=20,
            warmup_steps=2,
            schedule="wsd",
            muon_learning_rate=muon_learning_rate,
        )
        optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)

        @nnx.jit
        def step(model: GPT, optimizer: nnx.Optimizer) -> jax.Array:
            def loss_fn(model: GPT) -> jax.Array:
                logits, _ = model(tokens[:, :-1])
                targets = tokens[:, 1:]
                return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads, total_steps=config.steps)
            return loss

        return [float(step(model, optimizer)) for _ in range(config.steps)]

    muon, adam_only = losses(0.02), losses(0.0)  # 0: the block matrices stay put
    assert muon[-1] < 0.8 * muon[0]
    assert muon[-1] < adam_only[-1] - 0.1


def test_muon_on_stacks_of_same_shaped_matrices_is_muon_on_each():
    """stacked_by_shape only regroups: three steps of Muon (momentum and Newton-Schulz) give
    the same updates as optax's scale_by_muon on each matrix, shapes mixed and out of order."""
    keys = iter(jax.random.split(jax.random.key(0), 32))
    shapes = {"a": (8, 24), "b": (24, 8), "c": (8, 24), "d": (8, 8), "e": (24, 8)}
    params = {name: jax.random.normal(next(keys), shape) for name, shape in shapes.items()}

    def numbers(axes: tuple[int, int]):
        return lambda tree: jax.tree.map(lambda _: MuonDimensionNumbers(*axes), tree)

    each = scale_by_muon(nesterov=True, weight_dimension_numbers=numbers((0, 1)))
    stacked = stacked_by_shape(
        scale_by_muon(nesterov=True, weight_dimension_numbers=numbers((1, 2)))
    )
    each_state, stacked_state = each.init(params), stacked.init(params)
    for _ in range(3):
        grads = {name: jax.random.normal(next(keys), shape) for name, shape in shapes.items()}
        want, each_state = each.update(grads, each_state, params)
        got, stacked_state = jax.jit(stacked.update)(grads, stacked_state, params)
        assert got.keys() == want.keys()
        for name in shapes:
            assert got[name].shape == shapes[name]
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def test_warmup_stable_decay_schedule():
    config = TrainConfig(
        steps=100, warmup_steps=10, schedule="wsd", cooldown_fraction=0.2, min_lr_ratio=0.1
    )
    share = make_schedule(config)

    def lr(step: int, total: int = 100) -> float:
        return 2.0 * float(share(step, total))

    assert float(lr(0)) == 0.0
    assert float(lr(5)) == pytest.approx(1.0)
    assert float(lr(10)) == pytest.approx(2.0)  # the end of the warmup: the peak
    assert float(lr(50)) == float(lr(80)) == pytest.approx(2.0)  # flat up to the cooldown
    assert float(lr(90)) == pytest.approx(1.1)  # halfway down from 2.0 to 0.2
    assert float(lr(99)) == pytest.approx(0.2 + 1.8 / 20)  # the last step's rate
    assert float(lr(100)) == pytest.approx(0.2)  # min_lr_ratio * peak when the run ends
    # The step count is an input: a longer run stays flat longer and cools down over its own
    # last fifth, from the step settles_at names.
    assert lr(80, total=200) == lr(159, total=200) == pytest.approx(2.0)
    assert lr(180, total=200) == pytest.approx(1.1)
    assert settles_at(config, 100) == 80 and settles_at(config, 200) == 160


def test_the_classic_recipe_decays_on_a_cosine():
    config = TrainConfig(recipe="classic", steps=100, warmup_steps=10)
    share = make_schedule(config)
    lr = lambda step: float(share(step, 100))  # noqa: E731  (peak 1)
    assert config.schedule == "cosine" and config.optimizer == "adamw"
    assert float(lr(10)) == pytest.approx(1.0)
    assert float(lr(55)) == pytest.approx(0.55)  # halfway down the cosine from 1.0 to 0.1
    assert float(lr(100)) == pytest.approx(0.1)
    assert settles_at(config, 100) == 10  # the cosine's shape depends on the count after the warmup


@pytest.mark.parametrize(
    ("change", "flag"),
    [({"cooldown_fraction": 1.5}, "--cooldown-fraction"), ({"ema_decay": 1.0}, "--ema-decay")],
)
def test_impossible_settings_name_their_flag(change, flag):
    with pytest.raises(TrainError, match=flag):
        check_settings(dataclasses.replace(TrainConfig(), **change))


# ------------------------------------------------------------------ the moving average


def test_the_average_is_the_closed_form_of_a_known_sequence():
    decay, increments = 0.9, [1.0, 2.0, -0.5, 4.0, 3.0]
    optimizer = optax.chain(optax.sgd(1.0), track_average(decay))  # params += increment
    weights = jnp.zeros(3)
    state = optimizer.init(weights)
    sequence = [np.zeros(3)]
    for increment in increments:
        updates, state = optimizer.update(jnp.full(3, -increment), state, weights)
        weights = optax.apply_updates(weights, updates)
        sequence.append(np.asarray(weights))
    n = len(increments)
    expected = decay**n * sequence[0] + (1 - decay) * sum(
        decay ** (n - t) * sequence[t] for t in range(1, n + 1)
    )
    np.testing.assert_allclose(state[1].average, expected, rtol=1e-6)


def test_a_runs_average_tracks_its_weights_and_survives_a_checkpoint(tmp_path):
    decay = 0.8
    config = TrainConfig(optimizer="muon", ema_decay=decay, steps=10, warmup_steps=0)
    graphdef, state, update = training_state(config)
    sequence = [state_params(graphdef, state)]
    for seed in range(3):
        grads = jax.tree.map(
            lambda p, s=seed: jax.random.normal(jax.random.key(s), p.shape),
            zero_grads(graphdef, state),
        )
        state = update(state, grads)
        sequence.append(state_params(graphdef, state))
    averaged = flat(averaged_model_state(graphdef, state))
    n = len(sequence) - 1
    for path, weights in sequence[0].items():
        expected = decay**n * weights + (1 - decay) * sum(
            decay ** (n - t) * sequence[t][path] for t in range(1, n + 1)
        )
        np.testing.assert_allclose(averaged[path], expected, rtol=1e-5, atol=1e-7)
    embedding = ("token_embedding", "embedding")
    assert not np.allclose(averaged[embedding], sequence[-1][embedding])

    # Saved and restored like any training state (into a fresh one, as --resume does).
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(3, state)
    checkpoints.wait_until_finished()
    fresh = GPT(TINY, rngs=nnx.Rngs(1))
    _, like = nnx.split((fresh, nnx.Optimizer(fresh, make_optimizer(config), wrt=nnx.Param)))
    restored, step = checkpoints.restore(like=like)
    assert step == 3
    again = flat(averaged_model_state(graphdef, restored))
    assert again.keys() == averaged.keys()
    for path, weights in averaged.items():
        np.testing.assert_array_equal(again[path], weights)


def test_a_checkpoint_of_another_optimizer_state_is_refused_in_one_line(tmp_path):
    """A run saved with other optimizer state (here AdamW's, restored as Muon's: the shape an
    older version's Muon state has too) is refused with the fix, not half-restored."""

    def state(optimizer: str) -> nnx.State:
        model = GPT(TINY, rngs=nnx.Rngs(0))
        config = dataclasses.replace(ROUTING, optimizer=optimizer)
        return nnx.split((model, nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)))[1]

    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(2, state("adamw"))
    checkpoints.wait_until_finished()
    with pytest.raises(TrainError, match=r"step 2 .* another version of Punchline.* --out"):
        checkpoints.restore(like=state("muon"))


def test_a_run_without_an_average_has_none():
    model = GPT(TINY, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make_optimizer(TrainConfig()), wrt=nnx.Param)
    assert averaged_model_state(*nnx.split((model, optimizer))) is None


@pytest.mark.parametrize(("ema_bpc", "chosen"), [(1.9, "ema"), (2.1, "raw"), (None, "raw")])
def test_the_export_takes_the_better_weights_and_says_which(ema_bpc, chosen):
    figures = {"val_loss": 1.5, "val_bpc": 2.0}
    if ema_bpc is not None:
        figures.update({"ema_val_loss": 1.5 * ema_bpc / 2.0, "ema_val_bpc": ema_bpc})
    assert exported_weights(figures) == chosen
    fields = exported_figures(figures, chosen)
    assert fields["exported_weights"] == chosen
    assert fields["val_bpc"] == (ema_bpc if chosen == "ema" else 2.0)
    if ema_bpc is not None:
        assert fields["raw_val_bpc"] == 2.0 and fields["ema_val_bpc"] == ema_bpc
