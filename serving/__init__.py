"""Writing jokes for visitors and programs: everything the app does that is not a web page.

No module here imports Gradio: the page (`ui/`) and the benchmarks build on the same service.
Reading order:

    limits.py       what a request may ask for, and the queue's size
    errors.py       RequestError: a bad request, said in one line the visitor can act on
    validation.py   checking every value a visitor or program sends
    labels.py       how a token is written on the page
    explanations.py what the explainer answers: one dataclass per analysis
    joke.py         JokeRequest (a checked request) and Joke (a Generation, ready to show)
    writer.py       JokeWriter: the model loaded once, writing jokes; clean mode's retries
    originality.py  is the joke new? the nearest training joke
    explainer.py    Explainer: the lens, knockouts, importance map, branches, information
                    flow and attribution, compiled once
    trace.py        a joke and its branches saved as JSON, and read back for a replay
    training_replay.py  a joke written again by each training snapshot
    api.py          the JSON of /generate and of the explainer's endpoints
    reproduce.py    the commands and the link that write the same joke again
"""
