"""The web page, in Gradio: the only package (with app.py) that imports it.

Reading order:

    layout.py            one `create_...` helper per panel, and create_demo
    state.py             what the page keeps per visitor (the joke's versions), and its queues
    events.py            the handlers, bound to the service, and the events that call them
    study_panels.py      the panels of information flow, learner mode, attention over training
    explain_events.py    the explainer panels' handlers: knockout, rewrite, branches
    flow_events.py, learner_events.py, snapshot_events.py, trace_events.py
                         the handlers of flow and attribution, learner mode, the training
                         snapshots, and saving and replaying traces
    endpoints.py         the API: /generate and the explainer's endpoints, one signature list
    views.py             the HTML of each view, from a finished Joke
    rendering.py         heatmaps, token chips and cards as HTML
    analysis_rendering.py  the explainer's card, lens, knockout grid and branch views
    flow_rendering.py, learner_rendering.py, snapshot_rendering.py, role_badges.py
                         the flow graph and attribution, the learner's questions, a snapshot
                         and its role plot, the heads' role badges
    gradio_internals.py  what depends on Gradio's internals (written against Gradio 6.31.0)

The JavaScript the components run is in assets/*.js, the styles in assets/style.css.
"""
