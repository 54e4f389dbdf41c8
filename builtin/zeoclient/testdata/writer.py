"""Commit N transactions to a ZEO server as a plain Python ZODB client.

usage: writer.py HOST:PORT STORAGE N

Each transaction sets root['n'] and changes a persistent counter object,
so every commit touches the root (oid 0) and one more object. Prints the
hex tid of the last commit.
"""
import sys

import transaction
import ZEO
from persistent.mapping import PersistentMapping


def main():
    addr, storage, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host, port = addr.rsplit(":", 1)
    db = ZEO.DB((host, int(port)), storage=storage, wait_timeout=30)
    try:
        conn = db.open()
        root = conn.root()
        if "counter" not in root:
            root["counter"] = PersistentMapping()
            transaction.commit()
        for i in range(n):
            root["n"] = i
            root["counter"]["i"] = i
            transaction.commit()
        print(db.storage.lastTransaction().hex())
    finally:
        db.close()


if __name__ == "__main__":
    main()
