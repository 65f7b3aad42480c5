"""Talking to trained models: the inference worker, its JSON-lines protocol and the HTTP server.

:mod:`engine.serve.protocol` (torch-free) is the contract both sides import.
"""
