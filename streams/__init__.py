"""slatestream: Kafka in, fresh Thompson-sampled slates out (everything that touches Kafka)."""

__version__ = "0.1.0"
