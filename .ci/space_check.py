"""The API checks of .ci/space-check, run against `python app.py` started as a Space would.

    python .ci/space_check.py URL APP_LOG

Waits for the server, then asks for a joke in clean mode and checks that it came back, that
the originality verdict came from the index shipped with the model (the training files are
not there), and that clean mode checked it. Exits 1 with the reason otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gradio_client import Client

READY_SECONDS = 600  # a fresh start compiles everything; a slow CI machine takes minutes


def wait_for(url: str, log: Path) -> Client:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            return Client(url, verbose=False)
        except Exception as error:  # not listening yet: connection refused, or starting up
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                sys.exit(
                    f"space-check: the app did not answer in {READY_SECONDS} s ({error})\n{tail}"
                )
            time.sleep(2)


def main() -> int:
    url, log = sys.argv[1], Path(sys.argv[2])
    client = wait_for(url, log)
    joke = client.predict(prompt="Why did the", seed=1, clean=True, api_name="/generate")
    problems = []
    if not joke["written"]:
        problems.append("the joke is empty")
    if joke["clean"] is not True or not 1 <= joke["tries"] <= 5:
        problems.append(f"clean mode did not check the joke ({joke['clean']}, {joke['tries']})")
    deadline = time.monotonic() + 120  # the shipped index loads in the background
    nearest = joke["nearest"]
    while nearest["verdict"] is None and time.monotonic() < deadline:
        time.sleep(2)
        again = client.predict(prompt="Why did the", seed=1, clean=True, api_name="/generate")
        nearest = again["nearest"]
    if nearest["verdict"] is None or nearest["similarity"] is None:
        problems.append(f"no originality verdict without the training files: {nearest['note']}")
    if nearest["joke"] is not None:
        problems.append("a training joke's text was shown, but the training files are absent")
    if problems:
        print("space-check failed: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(
        f"space-check: joke, clean mode and originality ({nearest['verdict']}, similarity "
        f"{nearest['similarity']}) work with requirements.txt alone and no training files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
