"""Everything that touches Kafka: the Faust app, the producer helper, the
controller's Kafka loop and the ``foresight`` CLI."""
