"""Blob interchange with Go.

Usage: blobs.py read PATH BLOBDIR   -> JSON {oid hex: {tid hex: blob content}}
       blobs.py write PATH BLOBDIR  -> writes two blob revisions through ZODB.DB

read opens the storage read-only with Python's own blob support and loads
every blob revision the iterator shows.
"""
import json
import sys

import transaction
import ZODB
from ZODB.blob import Blob, is_blob_record
from ZODB.FileStorage import FileStorage


def read(path, blob_dir):
    fs = FileStorage(path, blob_dir=blob_dir, read_only=True)
    out = {}
    for txn in fs.iterator():
        for r in txn:
            if r.data is not None and is_blob_record(r.data):
                with open(fs.loadBlob(r.oid, r.tid), 'rb') as f:
                    out.setdefault(r.oid.hex(), {})[r.tid.hex()] = f.read().decode()
    fs.close()
    json.dump(out, sys.stdout)


def write(path, blob_dir):
    db = ZODB.DB(FileStorage(path, blob_dir=blob_dir))
    conn = db.open()
    root = conn.root()
    root['b'] = Blob(b'python one')
    transaction.commit()
    with root['b'].open('w') as f:
        f.write(b'python two')
    transaction.commit()
    conn.close()
    db.close()


if __name__ == '__main__':
    {'read': read, 'write': write}[sys.argv[1]](sys.argv[2], sys.argv[3])
