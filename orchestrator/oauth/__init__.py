"""Sign in with Spaceport, inside Spaces: Spaceport is the OpenID Connect provider of every
Space whose README says `hf_oauth: true`, as the Hub is for its Spaces, so Gradio's
`LoginButton` and `gr.OAuthProfile` (authlib underneath) work unchanged.

- clients.py: a Space as an OAuth client (its id, secret, scopes, where it may be sent back)
- keys.py: the key ID tokens are signed with, and its JWKS
- grants.py: authorization codes, traded once for an access token and an ID token
The routes: api/oauth.py (discovery, token, userinfo, JWKS) and web/oauth_consent.py (the
page a person allows the sign-in on).
"""
