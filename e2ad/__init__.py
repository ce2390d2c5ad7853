"""The operator's runtime: configuration loading, Kafka plumbing, local services and the command line."""
