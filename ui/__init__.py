"""The web page, in Gradio: the only package (with app.py) that imports it.

Reading order:

    layout.py            one `create_...` helper per panel, and create_demo
    state.py             what the page keeps per visitor (the joke's versions), and its queues
    events.py            the handlers, bound to the service, and the events that call them
    explain_events.py    the explainer panels' handlers: knockout, rewrite, branches
    endpoints.py         the API: /generate, /lens, /knockout, /importance, /branch
    views.py             the HTML of each view, from a finished Joke
    rendering.py         heatmaps, token chips and cards as HTML
    analysis_rendering.py  the explainer's card, lens, knockout grid and branch views
    gradio_internals.py  what depends on Gradio's internals (written against Gradio 6.31.0)

The JavaScript the components run is in assets/*.js, the styles in assets/style.css.
"""
