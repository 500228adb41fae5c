"""An MLLP sender that no ehrgate code wrote: python-hl7's asyncio client
(hl7.mllp.open_hl7_connection), used by the end-to-end tests as the peer.

  mllp_client.py --port P [--tls-ca CA.pem] corpus FILE...
      Sends each file's bytes as one frame (a message, or an FHS/BHS batch) and
      prints one JSON line per file: {"file": ..., "acks": [[MSA-1, MSA-2], ...]}.
  mllp_client.py --port P stream --count N [--start K] [--prefix X] [--window W] [--rate R]
      Sends N generated ADT^A01 messages (control id <X><i>, patient <X>-P<i>), up
      to W unacknowledged at a time (default 1), at most R per second when given
      (a steady load), checking that ACKs come back in order, printing
      "acked <i> <MSA-1>" after each ACK. On a broken connection it
      prints "broken <i>" (the first message without an ACK) and exits 3.
"""
import argparse
import asyncio
import json
import sys

import hl7
from hl7.mllp import open_hl7_connection


def msa_of(block: str):
    """[[MSA-1, MSA-2], ...] of an ACK (or of every ACK in a batch ACK)."""
    parsed = hl7.parse_hl7(block)
    messages = []
    if isinstance(parsed, hl7.Message):
        messages = [parsed]
    elif isinstance(parsed, hl7.Batch):
        messages = list(parsed)
    elif isinstance(parsed, hl7.File):
        messages = [m for b in parsed for m in b]
    out = []
    for m in messages:
        msa = m.segment("MSA")
        out.append([str(msa[1]), str(msa[2])])
    return out


def tls_context(ca):
    if not ca:
        return {}
    import ssl
    return {"ssl": ssl.create_default_context(cafile=ca)}


async def corpus(port, files, ca=None):
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8", encoding_errors="replace", **tls_context(ca))
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        writer.writeblock(data)
        await writer.drain()
        block = await asyncio.wait_for(reader.readblock(), 30)
        text = block.decode("utf-8", "replace") if isinstance(block, bytes) else block
        print(json.dumps({"file": f, "acks": msa_of(text)}), flush=True)
    writer.close()
    await writer.wait_closed()


def adt(prefix, i):
    return "\r".join([
        f"MSH|^~\\&|LOADGEN|HOSP|EHRGATE|LAKE|20240102030405||ADT^A01^ADT_A01|{prefix}{i}|P|2.5.1",
        "EVN|A01|20240102030405",
        f"PID|1||{prefix}-P{i}^^^HOSP^MR||Doe^Jane^Q||19800101|F",
        f"PV1|1|I|W1^101^A||||||||||||||||{prefix}-V{i}",
    ]) + "\r"


async def stream(port, start, count, prefix, window=1, rate=None):
    i = start          # the first message without an ACK
    sent = start       # the next message to send
    end = start + count
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def due(k):
        return t0 + (k - start) / rate if rate else t0

    try:
        reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        while i < end:
            while sent < end and sent - i < window and due(sent) <= loop.time():
                writer.writeblock(adt(prefix, sent).encode())
                sent += 1
            if sent == i:
                # Nothing in flight: wait for the next message's turn.
                await asyncio.sleep(max(0.0, due(sent) - loop.time()))
                continue
            await writer.drain()
            block = await asyncio.wait_for(reader.readblock(), 60)
            acks = msa_of(block.decode() if isinstance(block, bytes) else block)
            if not acks or acks[0][1] != f"{prefix}{i}":
                print(f"mismatch {i} {acks}", flush=True)
                return 4
            print(f"acked {i} {acks[0][0]}", flush=True)
            i += 1
        writer.close()
        await writer.wait_closed()
        return 0
    except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
        print(f"broken {i} {type(e).__name__}", flush=True)
        return 3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-ca", help="connect with TLS, trusting this CA certificate (PEM)")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("files", nargs="+")
    s = sub.add_parser("stream")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--start", type=int, default=0)
    s.add_argument("--prefix", default="STRM")
    s.add_argument("--window", type=int, default=1)
    s.add_argument("--rate", type=float, help="messages per second (default: as fast as ACKs allow)")
    a = p.parse_args()
    if a.cmd == "corpus":
        asyncio.run(corpus(a.port, a.files, a.tls_ca))
        return 0
    return asyncio.run(stream(a.port, a.start, a.count, a.prefix, a.window, a.rate))


if __name__ == "__main__":
    sys.exit(main())
