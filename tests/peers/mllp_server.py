"""A baseline MLLP server no ehrgate code wrote: python-hl7's asyncio server
(hl7.mllp.start_hl7_server), answering every message with its create_ack() (AA).
Used by scripts/bench-mllp as the peer to compare ehrgate's listener with.

  mllp_server.py --port P     (prints "listening on 127.0.0.1:P", serves until killed)
"""
import argparse
import asyncio

import hl7
from hl7.mllp import start_hl7_server


async def on_client(reader, writer):
    try:
        while not writer.is_closing():
            msg = await reader.readmessage()
            writer.writemessage(msg.create_ack())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    async with await start_hl7_server(on_client, host="127.0.0.1", port=port) as server:
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    asyncio.run(main(p.parse_args().port))
