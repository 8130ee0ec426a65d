"""Deployment helpers: the local Kafka (KRaft) + Redis stack launcher and ops configs."""
