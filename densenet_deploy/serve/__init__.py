"""Serving with Triton Inference Server, in one room: the artifact inspection, config.pbtxt and repository
layout (`dnx triton`), the python-backend model, the local server and its lifecycle (`dnx serve`), the client."""
