"""The web pages people meet Spaceport through: server-rendered HTML (Jinja2 templates under
templates/, one stylesheet and one script under static/), with actions done by the pages'
script through the JSON API (orchestrator/api/), authenticated by the session cookie.

Each page lives with its flow: home.py (the listing and a user's page), space_page.py (a
Space's page). render.py is the one place pages are rendered, so every page, the waiting
room and the status pages share one look (static/spaceport.css).
"""
