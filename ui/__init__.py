"""The web page, in Gradio: the only package (with app.py) that imports it.

Reading order:

    layout.py            one `create_...` helper per panel, and create_demo
    events.py            the handlers, bound to the service, and the events that call them
    views.py             the HTML of each view, from a finished Joke
    rendering.py         heatmaps, token chips and cards as HTML
    gradio_internals.py  what depends on Gradio's internals (written against Gradio 6.31.0)

The JavaScript the components run is in assets/*.js, the styles in assets/style.css.
"""
