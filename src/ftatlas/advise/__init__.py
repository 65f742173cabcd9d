"""`ftatlas advise`: the seeds decision map, resource estimates per method, ready recipes, a measured dry run."""
