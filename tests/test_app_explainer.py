"""The explainer's API on the running app (conftest.py's `app_server` on the tiny model):
/lens, /knockout, /importance, /branch, /roles, /flow and /attribution, called with
gradio_client as the README shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client
from tiny_app import CONFIG

from model.config import GPTConfig
from serving.trace import FORMAT, read_trace

pytestmark = pytest.mark.slow  # one server for the session, started by conftest.py

JOKE = dict(prompt="Why did the", max_new_tokens=12, clean=False)  # the joke analysed


@pytest.fixture(scope="module")
def joke(client: Client) -> dict:
    """The /generate answer every analysis below refers to (its seed writes it again)."""
    return client.predict(api_name="/generate", seed=5, **JOKE)


def call(client: Client, name: str, joke: dict, **kwargs) -> dict:
    return client.predict(api_name=f"/{name}", seed=joke["seed"], **JOKE, **kwargs)


def test_the_lens_ends_in_the_models_own_probability(client, joke):
    written = joke["top_candidates"]
    step = len(written) - 1
    lens = call(client, "lens", joke, step=step)
    assert len(lens["layers"]) == CONFIG["n_layer"] + 1  # the embeddings, then each block
    assert np.array(lens["heatmap"]).shape == (CONFIG["n_layer"] + 1, len(written))
    chosen = written[step]["sampled"]["token_id"]
    assert lens["predicting"] == joke["tokens"][joke["prompt_length"] + step]
    output = lens["layers"][-1]
    # The last layer's lens is the model's prediction, as /generate reported it.
    candidates = {c["token_id"]: c["probability"] for c in written[step]["candidates"]}
    if chosen in candidates:
        assert output["chosen_probability"] == pytest.approx(candidates[chosen], abs=2e-4)
    assert output["chosen_rank"] == (written[step]["sampled_rank"] or output["chosen_rank"])
    surprisal = joke["surprisal_bits"][step]
    assert output["chosen_probability"] == pytest.approx(2**-surprisal, abs=2e-4)


def test_a_knockout_changes_the_top_five_and_rewrites_the_rest(client, joke):
    nothing = call(client, "knockout", joke, step=2, heads=[], mode="zero")
    assert nothing["before"] == nothing["after"] and nothing["change_bits"] == 0
    assert nothing["rewritten"]["token_ids"] == joke["token_ids"]
    every_head = [[layer, head] for layer in range(CONFIG["n_layer"]) for head in range(2)]
    knocked = call(client, "knockout", joke, step=2, heads=every_head, mode="zero")
    assert knocked["before"] == nothing["before"] and knocked["after"] != knocked["before"]
    kept = joke["prompt_length"] + 2  # the tokens before step 2 stay
    assert knocked["rewritten"]["token_ids"][:kept] == joke["token_ids"][:kept]


def test_the_importance_map_is_each_single_knockout(client, joke):
    grid = call(client, "importance", joke, step=3, mode="zero")["change_bits"]
    assert np.array(grid).shape == (CONFIG["n_layer"], CONFIG["n_head"])
    single = call(client, "knockout", joke, step=3, heads=[[1, 0]], mode="zero")
    assert grid[1][0] == pytest.approx(single["change_bits"], abs=2e-4)


def test_a_branch_keeps_the_joke_up_to_the_fork_and_takes_the_forced_token(client, joke):
    ids = joke["token_ids"]
    step = 1
    other = next(c["token_id"] for c in joke["top_candidates"][step]["candidates"]
                 if c["token_id"] != ids[joke["prompt_length"] + step])  # fmt: skip
    branch = call(client, "branch", joke, step=step, token_id=other)
    fork = joke["prompt_length"] + step
    assert branch["token_ids"][:fork] == ids[:fork] and branch["token_ids"][fork] == other
    assert branch["forced"][: step + 1] == [True] * (step + 1)
    attention = np.array(branch["attention"])
    assert attention.shape[-1] == len(branch["token_ids"]) and branch["nearest"] is None


BAD = [
    ("lens", dict(step=99), "step must be a whole number from 0"),
    ("lens", dict(step="2"), "step must be a whole number"),
    ("knockout", dict(step=0, heads=[[0, 9]]), "heads must be a list of [layer, head] pairs"),
    ("knockout", dict(step=0, heads=[[0, 0], [0, 0]]), "heads must name each head once"),
    ("knockout", dict(step=0, heads=[[0, 0]], mode="half"), "mode must be one of"),
    ("importance", dict(step=0, mode=3), "mode must be one of"),
    ("branch", dict(step=0, token_id=-1), "token_id must be a whole number from 0"),
    ("branch", dict(step=0, token_id="start"), "token_id is the end-of-joke token"),
]


@pytest.mark.parametrize(("name", "values", "message"), BAD)
def test_bad_analysis_requests_are_refused_naming_the_parameter(
    client, joke, name, values, message
):
    if values.get("token_id") == "start":
        values = {**values, "token_id": joke["token_ids"][0]}  # the end-of-joke token
    with pytest.raises(Exception, match=re.escape(message)):
        call(client, name, joke, **values)


def test_flow_and_attribution_answer_for_the_joke_generate_wrote(client, joke):
    step = len(joke["top_candidates"]) - 1
    flow = call(client, "flow", joke, step=step, threshold=0.04)
    position = joke["prompt_length"] + step - 1
    assert flow["position"] == position and flow["tokens"] == joke["tokens"]
    assert flow["nodes"][0] == {"kind": "block", "layer": CONFIG["n_layer"] - 1, "token": position}
    assert sum(flow["token_flow"]) == pytest.approx(1, abs=1e-3)
    attribution = call(client, "attribution", joke, step=step, integrated=True)
    assert len(attribution["gradient_times_input"]) == position + 1
    gap, change = attribution["completeness_gap"], attribution["change"]
    assert abs(gap) < 0.05 * abs(change) + 0.01
    with pytest.raises(Exception, match="threshold must be a number from 0 to 1"):
        call(client, "flow", joke, step=step, threshold=2)


def test_the_trace_holds_the_joke_and_reads_back(client, joke, model_folder):

    trace = client.predict(api_name="/trace", seed=joke["seed"], **JOKE)
    assert trace["format"] == FORMAT
    assert trace["versions"][0]["token_ids"] == joke["token_ids"]
    config = GPTConfig(**json.loads((model_folder / "config.json").read_text()))
    versions, _ = read_trace(json.dumps(trace), config)
    assert versions[0].joke.generation.token_ids == joke["token_ids"]


def test_snapshots_write_the_joke_again_with_each_steps_weights(client, joke):
    first = client.predict(api_name="/snapshots", seed=joke["seed"], **JOKE, snapshot=0)
    last = client.predict(api_name="/snapshots", seed=joke["seed"], **JOKE, snapshot=1)
    assert (first["step"], last["step"]) == (3, 10) and first["steps"] == [3, 10]
    assert last["tokens"][: joke["prompt_length"]] == joke["tokens"][: joke["prompt_length"]]
    assert len(first["role_history"]["induction"]) == 2
    with pytest.raises(Exception, match="snapshot must be a whole number from 0"):
        client.predict(api_name="/snapshots", seed=joke["seed"], **JOKE, snapshot=2)


def test_the_api_lists_exactly_the_documented_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == [
        "/attribution", "/branch", "/flow", "/generate", "/importance", "/knockout", "/lens",
        "/roles", "/snapshots", "/trace",
    ]  # fmt: skip
    parameters = [p["parameter_name"] for p in endpoints["/knockout"]["parameters"]]
    assert parameters[-3:] == ["step", "heads", "mode"]


def test_roles_give_every_head_its_role_and_scores_as_the_folder_ships_them(client, model_folder):
    answer = client.predict(api_name="/roles")
    shipped = json.loads((model_folder / "head_roles.json").read_text())
    layers, heads = CONFIG["n_layer"], CONFIG["n_head"]
    assert [(h["layer"], h["head"]) for h in answer["heads"]] == [
        (layer, head) for layer in range(layers) for head in range(heads)
    ]
    for entry in answer["heads"]:
        layer, head = entry["layer"], entry["head"]
        assert entry["role"] == shipped["roles"][layer][head]
        assert entry["sink"] == shipped["sinks"][layer][head]
        assert entry["scores"] == {k: v[layer][head] for k, v in shipped["scores"].items()}
        assert all(0 <= score <= 1 for score in entry["scores"].values())
    assert answer["bars"]["sink"] == shipped["bars"]["sink"]
    size = len(answer["thumbnail_probes"]["repeat"])
    assert np.asarray(answer["thumbnails"]).shape == (layers, heads, size, size)


def test_the_readmes_explainer_example_runs(client, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    example = next(block for block in blocks if 'api_name="/lens"' in block)
    exec(compile(example, "README.md", "exec"), {"client": client})
    printed = capsys.readouterr().out
    assert "commits at layer" in printed and printed.count("\n") >= CONFIG["n_layer"] + 4
