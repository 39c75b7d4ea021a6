"""The HTTP service's parts; app.py composes them into the application.

state.py      what every request may use (pools, settings, tokens, metrics),
              injected into handlers by name
security.py   bearer tokens with scopes, and the reports' sign-in session
problems.py   every error as an RFC 9457 problem document
asgi.py       request ids, HEAD as GET, request metrics
schemas.py    the shapes the OpenAPI document describes
tables.py rejections.py backups.py kpis.py pages.py health.py metrics.py
              one controller per resource
"""
