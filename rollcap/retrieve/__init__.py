"""Finding and fetching captures back from the destination."""
