"""What is left of the registry in the kernel: the device inventory service, on its way to
``iot_ingest/`` (issue #9). The registry itself is the top-level ``registry`` package."""
