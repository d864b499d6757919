#!/usr/bin/env python3
"""Follow tagrelay's commits from another team's program.

tagrelay's events are a public API: anything that can read NATS JetStream
can follow them, without tagrelay knowing. This script keeps its own durable
pull consumer on the event log (stream TAGRELAY_EVENTS, subjects
tagrelay.commit.>), so a restart resumes after the last event it
acknowledged and misses nothing, and prints one line per CommitPushed:

    <automation> <commit> <branch> <old> -> <new> [signed by <key>]

Requires `pip install nats-py`. Usage:

    follow_commits.py [--nats-url nats://127.0.0.1:4222] [--durable NAME]
                      [--count N] [--json]

--count N stops after N commits (for scripts and tests); --json prints each
event's payload as one JSON line instead. An event whose `version` this
script does not know is refused (not acknowledged), as the schemas in
proto/schema/ ask readers to do.
"""

import argparse
import asyncio
import json
import sys

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "TAGRELAY_EVENTS"
SUBJECT = "tagrelay.commit.>"
KNOWN_VERSION = 1


def describe(payload):
    """One line for a CommitPushed payload."""
    changes = "; ".join(
        f"{c['file']}: {c['old']} -> {c['new']}" for c in payload.get("changes", [])
    )
    line = f"{payload['automation']['namespace']}/{payload['automation']['name']} {payload['commit'][:12]} {payload['branch']} {changes}"
    signed = payload.get("signed_with")
    if signed:
        line += f" [signed by {signed['format']} {signed['fingerprint']}]"
    return line


async def follow(args):
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        SUBJECT,
        durable=args.durable,
        stream=STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL
        ),
    )
    seen = 0
    try:
        while args.count is None or seen < args.count:
            try:
                messages = await subscription.fetch(1, timeout=args.timeout)
            except nats.errors.TimeoutError:
                if args.count is not None:
                    print(f"only {seen} of {args.count} commits arrived", file=sys.stderr)
                    return 1
                continue
            for message in messages:
                event = json.loads(message.data)
                if event.get("type") != "CommitPushed":
                    await message.ack()
                    continue
                if event.get("version") != KNOWN_VERSION:
                    print(f"refusing {event.get('type')} version {event.get('version')}", file=sys.stderr)
                    await message.nak()
                    continue
                if args.json:
                    print(json.dumps(event["payload"], sort_keys=True), flush=True)
                else:
                    print(describe(event["payload"]), flush=True)
                await message.ack_sync()
                seen += 1
    finally:
        await nc.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--durable", default="commit-follower")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    return asyncio.run(follow(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
