"""Decode ZEO messages with Python ZEO's own decoders and encode them again
with its own encoders, for the Go codec's differential test.

stdin: one message a line, "<Z|M> <hex payload>".
stdout: one line each, the hex of Python's re-encoding, or "ERR <reason>".
"""
import sys

from ZEO.asyncio.marshal import encoder, server_decoder


def main():
    for line in sys.stdin:
        proto, payload = line.split()
        proto = proto.encode() + b"5"
        try:
            msg = server_decoder(proto)(bytes.fromhex(payload))
            out = encoder(proto, server=True)(*msg)
            print(out.hex())
        except Exception as e:  # reported to the Go test
            print("ERR", type(e).__name__, str(e).replace("\n", " "))
        sys.stdout.flush()


main()
