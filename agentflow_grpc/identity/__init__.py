"""Identity from outside: people signed in through an OpenID Connect issuer (oidc.py), their
tokens verified against its published keys and their claims mapped to a tenant and a role."""
