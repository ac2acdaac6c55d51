"""Read queries of the portal: database rows in, view models out, one module per page."""
