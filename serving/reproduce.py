"""The commands that write a joke again: every joke is a pure function of its request."""

from __future__ import annotations

import shlex

from serving.joke import JokeRequest


def reproduce(folder: str, job: JokeRequest, address: str) -> tuple[str, str]:
    """A shell command and a gradio_client call that give the same joke again."""
    s = job.settings
    command = ["python", "-m", "model.generate", "--checkpoint", folder, "-n", "1"]
    if job.prompt:
        command += ["--prompt", job.prompt]
    command += ["--seed", str(s.seed), "--temperature", f"{s.temperature!r}"]
    command += ["--top-k", str(s.top_k), "--top-p", f"{s.top_p!r}"]
    command += ["--max-new-tokens", str(s.max_new_tokens)]
    client = (
        "from gradio_client import Client\n\n"
        f"joke = Client({address!r}).predict(\n"
        f"    prompt={job.prompt!r},\n"
        f"    temperature={s.temperature!r}, top_k={s.top_k}, top_p={s.top_p!r},\n"
        f"    max_new_tokens={s.max_new_tokens}, seed={s.seed},\n"
        '    api_name="/generate",\n)\nprint(joke["text"])\n'
    )
    return shlex.join(command), client
