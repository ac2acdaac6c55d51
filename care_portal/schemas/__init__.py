"""Request, response and view models of the portal, one module per resource, apart from routes."""
