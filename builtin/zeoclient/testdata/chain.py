"""A plain Python ZODB application, run against zeoraid's server whose
storage is a <zeoclient> of runzeo (and directly against runzeo).

usage: chain.py write|read HOST:PORT STORAGE

write: a BTree of 100 items, a BTrees.Length bumped by two connections at
once (a conflict the storage chain must let the client resolve), and a
blob. read (from a fresh client with an empty blob cache): checks it all
and prints "ok".
"""
import sys
import tempfile

import transaction
import ZEO
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.blob import Blob

BLOB = b"chain blob " * 1000


def open_db(addr, storage):
    host, port = addr.rsplit(":", 1)
    return ZEO.DB((host, int(port)), storage=storage,
                  blob_dir=tempfile.mkdtemp(), shared_blob_dir=False,
                  wait_timeout=30)


def write(db):
    conn = db.open()
    root = conn.root()
    root["tree"] = OOBTree()
    root["len"] = Length()
    for i in range(100):
        root["tree"][i] = "v%d" % i
    blob = Blob()
    with blob.open("w") as f:
        f.write(BLOB)
    root["blob"] = blob
    transaction.commit()
    conn.close()
    # Two connections change the Length concurrently: the second commit
    # conflicts and is resolved.
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    c1, c2 = db.open(tm1), db.open(tm2)
    c1.root()["len"].change(1)
    c2.root()["len"].change(2)
    tm1.commit()
    tm2.commit()
    c1.close()
    c2.close()


def read(db):
    root = db.open().root()
    assert len(root["tree"]) == 100 and root["tree"][42] == "v42", "tree"
    assert root["len"]() == 3, root["len"]()
    with root["blob"].open() as f:
        assert f.read() == BLOB, "blob"
    print("ok")


def main():
    mode, addr, storage = sys.argv[1:4]
    db = open_db(addr, storage)
    try:
        {"write": write, "read": read}[mode](db)
    finally:
        db.close()


if __name__ == "__main__":
    main()
