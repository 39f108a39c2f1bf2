"""Example consumer: print bindwatch alerts as they arrive.

    .venv/bin/python docs/alerts_consumer.py                   # new alerts from now on
    .venv/bin/python docs/alerts_consumer.py --from-beginning  # everything on the topic

Any Kafka client can do the same: the value is JSON (schemas/json/alert.v1.schema.json), the key is the
alert fingerprint, and the ``schema`` header names the schema version. Consumers should deduplicate by
``alertId``: delivery is at-least-once, so after a crash the same emission may appear twice.
"""

import argparse
import asyncio
import json
import os
import uuid

from aiokafka import AIOKafkaConsumer


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--topic", default=os.environ.get("BINDWATCH_ALERTS_TOPIC", "bindwatch.alerts.v1"))
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max", type=int, default=0, help="stop after this many alerts (0: never)")
    args = parser.parse_args()
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=f"alerts-printer-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    print(f"watching {args.topic} on {args.bootstrap} (Ctrl-C to stop)", flush=True)
    seen: set[str] = set()
    try:
        async for msg in consumer:
            alert = json.loads(msg.value)
            if alert["alertId"] in seen:  # at-least-once delivery: skip a re-sent emission
                continue
            seen.add(alert["alertId"])
            subject = " -> ".join(x for x in (alert["caller"], alert["did"]) if x)
            print(
                f"{alert['emittedAt']}  {alert['status'].upper():8} {alert['severity']:8} {alert['rule']:13} "
                f"{subject}  count={alert['count']} threshold={alert['threshold']}/{alert['windowSeconds']}s "
                f"window={alert['windowStart']}..{alert['windowEnd']}",
                flush=True,
            )
            if args.max and len(seen) >= args.max:
                break
    finally:
        await consumer.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
