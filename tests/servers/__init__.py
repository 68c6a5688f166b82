"""Real servers the test suite starts by itself on free ports of 127.0.0.1 and stops by PID (a Kafka
broker, S3 servers...), one module per server."""
