"""Turn ZEO error replies into exceptions exactly as the Python ZEO client
does (its decoder and its exc_factories), for the Go error-mapping test.

stdin: one reply a line, "<Z|M> <hex payload>".
stdout: one line each: "<module.Class> <str of the exception>", or
"ERR <reason>" when the Python client would fail (and hang its caller).
"""
import sys

from ZEO.asyncio.client import exc_factories
from ZEO.asyncio.marshal import decoder
from ZEO.Exceptions import ServerException


def main():
    for line in sys.stdin:
        proto, payload = line.split()
        try:
            msgid, flag, name, args = decoder(proto.encode() + b"5")(
                bytes.fromhex(payload))
            assert name == ".reply" and flag, "not an error reply"
            class_, args = args
            factory = exc_factories.get(class_)
            exc = factory(class_, args) if factory else ServerException(
                class_, args)
            cls = type(exc)
            print(f"{cls.__module__}.{cls.__name__}", str(exc).replace(
                "\n", " "))
        except Exception as e:  # reported to the Go test
            print("ERR", type(e).__name__, str(e).replace("\n", " "))
        sys.stdout.flush()


main()
