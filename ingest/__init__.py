"""Ingest: the Graph webhook, the subscription keeper and the delta reader; they put Graph changes on Kafka."""
