"""Service: the HTTP API, the database, jobs and the `headshot` command line."""
