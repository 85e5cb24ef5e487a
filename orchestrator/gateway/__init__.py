"""The gateway: serves each Space at http://{owner}-{name}.{SPACEPORT_SPACES_DOMAIN}.

It wraps the control plane's ASGI app: requests for a Space's host are proxied to the
Space's serving instance (HTTP, streamed responses, websockets, uploads); every other
request goes to the API and git hosting.
"""
