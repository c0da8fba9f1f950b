"""HTTP routes, one module per kind of user: thin wrappers over the libraries."""
