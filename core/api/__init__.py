from csp.decorators import csp_update


def api_docs(view):
    """Swagger UI sets inline styles; allow them on the docs page only."""
    return csp_update({"style-src": ["'unsafe-inline'"], "img-src": ["data:"]})(view)
