"""Traces (serving/trace.py): a joke and its branches saved as JSON and read back as they
were shown, within 1 MB, and every malformed or foreign trace refused with one line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from serving.joke import Version
from serving.trace import FORMAT, LEVELS, MAX_TRACE_BYTES, TraceError, read_trace, trace_json

SENT = ("Why did the duck", 1.0, 0, 1.0, 12, 3, False)


@pytest.fixture(scope="module")
def versions(writer, explainer) -> list[Version]:
    joke = writer.write(writer.request(*SENT))
    branch = explainer.branch(joke, 2, 5)
    fork = joke.generation.prompt_length + 2
    return [Version(joke, "Original"), Version(branch, "Branch 1 · at step 2", 0, fork)]


@pytest.fixture(scope="module")
def saved(versions, explainer) -> dict:
    return json.loads(json.dumps(trace_json(versions, explainer)))  # as a file holds it


def test_a_trace_reads_back_as_the_jokes_were_shown(writer, explainer, versions, saved):
    assert saved["format"] == FORMAT
    read, roles = read_trace(json.dumps(saved), writer.config)
    assert [v.name for v in read] == [v.name for v in versions]
    assert (read[1].parent, read[1].fork) == (versions[1].parent, versions[1].fork)
    for original, replayed in zip(versions, read, strict=True):
        a, b = original.joke, replayed.joke
        assert (b.request, b.labels, b.candidate_labels, b.written) == (
            a.request, a.labels, a.candidate_labels, a.written
        )  # fmt: skip
        ga, gb = a.generation, b.generation
        assert gb.token_ids == ga.token_ids and gb.prompt_length == ga.prompt_length
        assert (gb.forced, gb.ended, gb.trimmed) == (ga.forced, ga.ended, ga.trimmed)
        assert [ids for ids, _ in gb.candidates] == [ids for ids, _ in ga.candidates]
        for (_, pb), (_, pa) in zip(gb.candidates, ga.candidates, strict=True):
            np.testing.assert_allclose(pb, pa, atol=1e-6)
        np.testing.assert_allclose(gb.chosen_probabilities, ga.chosen_probabilities, atol=1e-6)
        # Attention in one byte per weight: within a level (and the renormalisation).
        np.testing.assert_allclose(gb.attention, ga.attention, atol=1.5 / LEVELS)
        np.testing.assert_allclose(gb.attention.sum(-1), 1, atol=1e-5)
        assert a.traced_lens is None and len(b.traced_lens) == len(ga.forced)
        for step, view in enumerate(b.traced_lens):
            fresh = explainer.lens(ga.token_ids, ga.prompt_length, step)
            assert (view.step, view.token_id, view.predicting) == (step, fresh.token_id,
                                                                    fresh.predicting)  # fmt: skip
            assert view.commitment == fresh.commitment
            for got, want in zip(view.layers, fresh.layers, strict=True):
                assert [c.token_id for c in got.top] == [c.token_id for c in want.top]
                assert got.chosen_rank == want.chosen_rank
                assert got.chosen_probability == pytest.approx(want.chosen_probability, abs=1e-5)
            np.testing.assert_allclose(view.heatmap, fresh.heatmap, atol=1e-4)
    shipped = explainer.head_roles
    assert (roles is None) == (shipped is None)
    if shipped is not None:
        assert roles.roles == shipped.roles


def test_a_joke_that_fills_the_context_fits_in_a_megabyte(writer, explainer):
    block = writer.config.block_size
    joke = writer.write(writer.request("duck " * 200, 1.0, 0, 1.0, block, 1, False))
    assert len(joke.generation.token_ids) == block
    size = len(json.dumps(trace_json([Version(joke, "Original")], explainer)).encode())
    assert size < MAX_TRACE_BYTES
    print(f"\ntrace of a {block}-token joke: {size:,} bytes")


def mutate(saved: dict, change) -> str:
    trace = copy.deepcopy(saved)
    change(trace)
    return json.dumps(trace)


BROKEN = {
    "not json": (lambda s: "{not json", "the trace is not JSON"),
    "other format": (lambda s: mutate(s, lambda t: t.update(format="punchline-trace-v9")),
                     "format should be 'punchline-trace-v1'"),
    "a list": (lambda s: "[1, 2]", "format should be"),
    "other model": (lambda s: mutate(s, lambda t: t["model"].update(n_layer=7)),
                    "a model with n_layer 7"),
    "no versions": (lambda s: mutate(s, lambda t: t.update(versions=[])),
                    "should list at least one version"),
    "bad token": (lambda s: mutate(s, lambda t: t["versions"][0]["token_ids"].__setitem__(1, -4)),
                  "versions[0].token_ids should be"),
    "lost label": (lambda s: mutate(s, lambda t: t["versions"][0]["labels"].pop()),
                   "versions[0].labels should be"),
    "missing steps": (lambda s: mutate(s, lambda t: t["versions"][1]["steps"].pop()),
                      "versions[1].steps should hold"),
    "cut attention": (lambda s: mutate(s, lambda t: t["versions"][0]["attention"].update(
                          data=t["versions"][0]["attention"]["data"][:-8])),
                      "versions[0].attention.data does not hold"),
    "no seed": (lambda s: mutate(s, lambda t: t["versions"][0]["request"]["settings"].pop("seed")),
                "versions[0].request.settings.seed is missing"),
    "bad parent": (lambda s: mutate(s, lambda t: t["versions"][1].update(parent=5)),
                   "versions[1].parent should be"),
    "nan": (lambda s: mutate(s, lambda t: t["versions"][0]["steps"][0].update(
                chosen_probability=float("nan"))), "chosen_probability should be a number"),
    "too big": (lambda s: " " * (MAX_TRACE_BYTES + 1), "over 1,000,000 bytes"),
}  # fmt: skip


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_a_malformed_trace_is_refused_with_one_line_naming_what_is_wrong(writer, saved, case):
    make, expected = case
    with pytest.raises(TraceError) as error:
        read_trace(make(saved), writer.config)
    message = error.value.message
    assert expected in message, message
    assert "\n" not in message and len(message) < 300
    assert message.endswith("load a file saved with 'Save the trace' by this app, unchanged")
