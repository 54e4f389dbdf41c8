"""Write a Data.fs with real ZODB for the Go storage to read.

Usage: make_data.py PATH

Many transactions through ZODB.DB (BTrees, persistent mappings, users,
notes, extensions), an undo, a deleteObject, a GC pack to a time in the
middle, and commits after the pack. The clock is not frozen; the Go test
compares against dump.py run on the result.
"""
import sys
import time

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage


def tick():
    # Make consecutive commits get clearly different times.
    time.sleep(0.002)


def main(path):
    fs = FileStorage(path)
    db = ZODB.DB(fs)
    conn = db.open()
    root = conn.root()
    root['tree'] = OOBTree()
    root['counter'] = PersistentMapping({'n': 0})
    transaction.commit()
    for i in range(120):
        tree = root['tree']
        tree['k%04d' % i] = PersistentMapping({'i': i, 'pad': 'x' * (i % 7)})
        root['counter']['n'] = i
        txn = transaction.get()
        if i % 10 == 0:
            txn.setUser('user%d' % i)
            txn.note('batch %d' % i)
            txn.setExtendedInfo('i', i)
        transaction.commit()
        tick()
    # Modify some existing objects, remove others from the tree.
    for i in range(0, 120, 3):
        root['tree']['k%04d' % i]['i'] = -i
        transaction.commit()
        tick()
    gone = root['tree']['k0005']
    del root['tree']['k0005']
    transaction.commit()
    tick()
    # Undo the third newest transaction, then a creation-style undo.
    log = db.undoLog(0, 10)
    db.undo(log[2]['id'])
    transaction.get().note('undo one')
    transaction.commit()
    tick()
    mid = time.time()
    tick()
    # More history after the pack time.
    for i in range(120, 150):
        root['tree']['k%04d' % i] = PersistentMapping({'i': i})
        transaction.commit()
        tick()
    # deleteObject (IExternalGC) on the unlinked object.
    oid, serial = gone._p_oid, gone._p_serial
    conn.close()
    t = TransactionMetaData(description='delete k0005')
    fs.tpc_begin(t)
    fs.deleteObject(oid, serial, t)
    fs.tpc_vote(t)
    fs.tpc_finish(t)
    tick()
    db.pack(mid)
    conn = db.open()
    root = conn.root()
    for i in range(150, 160):
        root['tree']['k%04d' % i] = PersistentMapping({'i': i})
        transaction.commit()
        tick()
    # Undo after the pack.
    db.undo(db.undoLog(0, 1)[0]['id'])
    transaction.commit()
    conn.close()
    db.close()


if __name__ == '__main__':
    main(sys.argv[1])
