"""``python -m iot_ingest``: run one ingest worker (used by fault tests and the benchmark).

Connection settings come from the usual ``Settings`` environment (``ELDERCARE_DATABASE_URL``,
``ELDERCARE_MQTT_URL``, ``ELDERCARE_INGEST_CLIENT_ID``) unless given as options.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from core.settings import Settings
from iot_ingest.consumer import SUBSCRIPTION, IngestConfig, run


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m iot_ingest")
    parser.add_argument(
        "--database-url", default=os.environ.get("ELDERCARE_DATABASE_URL", defaults.database_url)
    )
    parser.add_argument("--mqtt-url", default=os.environ.get("ELDERCARE_MQTT_URL", defaults.mqtt_url))
    parser.add_argument("--client-id", default=os.environ.get("ELDERCARE_INGEST_CLIENT_ID"))
    parser.add_argument("--subscription", default=SUBSCRIPTION)
    parser.add_argument("--session-expiry", type=int, default=IngestConfig().session_expiry_s)
    parser.add_argument("--batch-max-msgs", type=int, default=IngestConfig().batch_max_msgs)
    parser.add_argument("--batch-max-ms", type=int, default=IngestConfig().batch_max_ms)
    args = parser.parse_args(argv)
    settings = Settings(database_url=args.database_url, mqtt_url=args.mqtt_url)
    config = IngestConfig(
        subscription=args.subscription,
        session_expiry_s=args.session_expiry,
        batch_max_msgs=args.batch_max_msgs,
        batch_max_ms=args.batch_max_ms,
    )
    if args.client_id:
        config = replace(config, client_id=args.client_id)
    run(settings, config)


if __name__ == "__main__":
    main()
