"""A Kafka client that no ehrgate code wrote, and not built on librdkafka either:
kafka-python, used by the Kafka end-to-end tests as the other side of the bus.

  kafka_client.py --bootstrap HOST:PORT produce --topic T --count N [--start K] [--prefix X]
      Produces N generated ADT^A01 messages (control id <X><i>, patient
      <X>-P<i>), each keyed by its control id, and waits until the broker has
      acknowledged every one. Prints "produced N".
  kafka_client.py --bootstrap HOST:PORT consume --topic T --expect N [--timeout S]
      Reads every partition of the topic from the start until N distinct keys were seen
      or S seconds passed; prints one JSON line per record:
      {"key": ..., "partition": ..., "offset": ..., "value": <the record's JSON>}.
"""
import argparse
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def adt(prefix: str, i: int) -> bytes:
    return (
        f"MSH|^~\\&|BUS|HOSP|EHRGATE|HOSP|20261205010101||ADT^A01|{prefix}{i}|P|2.5\r"
        f"EVN|A01|20261205010101\r"
        f"PID|1||{prefix}-P{i}^^^HOSP^MR||Doe^Pat{i}||19800101|F\r"
        f"PV1|1|I|W1^101^1\r"
    ).encode()


def produce(args):
    p = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=5)
    futures = [p.send(args.topic, key=f"{args.prefix}{i}".encode(), value=adt(args.prefix, i)) for i in range(args.start, args.start + args.count)]
    p.flush()
    for f in futures:
        f.get(timeout=30)
    p.close()
    print(f"produced {len(futures)}", flush=True)


def consume(args):
    # Partitions assigned by hand, read from the start: the checker needs no group.
    c = KafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    deadline = time.time() + args.timeout
    partitions = None
    while not partitions and time.time() < deadline:
        partitions = c.partitions_for_topic(args.topic)
        if not partitions:
            time.sleep(0.2)
    if not partitions:
        print(f"topic {args.topic} has no partitions", file=sys.stderr)
        sys.exit(3)
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    keys = set()
    while len(keys) < args.expect and time.time() < deadline:
        for m in c:
            keys.add(m.key)
            try:
                value = json.loads(m.value)
            except ValueError:
                value = m.value.decode(errors="replace") if m.value is not None else None
            print(json.dumps({"key": m.key.decode() if m.key else None, "partition": m.partition, "offset": m.offset, "value": value}), flush=True)
            if len(keys) >= args.expect:
                break
    c.close()
    if len(keys) < args.expect:
        print(f"only {len(keys)} of {args.expect} keys within {args.timeout} s", file=sys.stderr)
        sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--prefix", default="K")
    c = sub.add_parser("consume")
    c.add_argument("--topic", required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    produce(args) if args.cmd == "produce" else consume(args)


if __name__ == "__main__":
    main()
