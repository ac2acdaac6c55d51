"""The portal's routers, one per resource."""
