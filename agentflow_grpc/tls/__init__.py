"""TLS without transport imports: certificates and their authority (authority.py), and the PEM
files a server is given, read and checked together (files.py). The gRPC server's credentials
are made from them in api/tls.py."""
