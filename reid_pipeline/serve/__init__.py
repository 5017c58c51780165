"""The operator console (``reid serve``, ``reid stream --serve``): an HTTP API and web pages
over a gallery and, beside a live stream, its cameras and events.

``app.create_app(gallery, cfg, live=None)`` builds the FastAPI app; ``live.LiveHub`` is the
live side (latest-frame slots, the event feed, writes run in the loop's thread);
``server`` runs it with uvicorn. Access and file rules: ``auth``, ``media``.
"""
