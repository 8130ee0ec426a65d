"""The main job: the whole loop with simulated MovieLens users, embedded or on Kafka."""
