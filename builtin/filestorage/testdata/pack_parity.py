"""Pack parity with Go: write a history with real ZODB, or pack with Python.

Usage: pack_parity.py make PATH BLOBDIR LATE_UNDO -> JSON {"pack_time": t}
       pack_parity.py pack PATH BLOBDIR T GC       -> JSON {"error": name or null}

make writes many transactions through ZODB.DB: an OOBTree growing past
one bucket, persistent mappings, blobs (created, changed, unlinked), undo
before the pack time, removals from the tree, a deleteObject, and more of
each after the pack time, whose float Unix time it prints. With
LATE_UNDO=1 it also undoes, after the pack time, a transaction from
before it, so that a backpointer after the pack time names a revision
that is not current at the pack time (Python's reach_ex; its non-GC pack
raises PackError on such a file).

pack packs PATH with FileStorage.pack(T, referencesf) and pack_gc=GC,
keeping the old file, and reports the exception's class name if it fails.
"""
import json
import sys
import time

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf


def tick():
    time.sleep(0.003)


def commit(note=None):
    if note:
        transaction.get().note(note)
    transaction.commit()
    tick()


def make(path, blob_dir, late_undo):
    fs = FileStorage(path, blob_dir=blob_dir)
    db = ZODB.DB(fs)
    conn = db.open()
    root = conn.root()
    root['tree'] = OOBTree()
    root['meta'] = PersistentMapping({'n': 0})
    root['blobs'] = PersistentMapping()
    commit('setup')
    for i in range(150):
        root['tree']['k%04d' % i] = PersistentMapping({'i': i, 'pad': 'y' * (i % 11)})
        root['meta']['n'] = i
        txn = transaction.get()
        if i % 10 == 0:
            txn.setUser('user%d' % i)
            txn.setExtendedInfo('batch', i)
        if i % 25 == 0:
            root['blobs']['b%d' % i] = Blob(b'blob %d' % i)
        commit('add %d' % i)
    for i in range(0, 150, 4):
        root['tree']['k%04d' % i]['i'] = -i
        commit()
    # Its only record stays current; the one before it (k0148's creation)
    # does not.
    late_target = db.undoLog(0, 1)[0]['id']
    # Blob revisions, and an unlinked blob.
    for rev in range(3):
        with root['blobs']['b0'].open('w') as f:
            f.write(b'b0 revision %d' % rev)
        commit('blob rev %d' % rev)
    del root['blobs']['b25']
    commit('unlink blob')
    del root['blobs']['b75']
    commit('unlink another blob')
    db.undo(db.undoLog(0, 1)[0]['id'])
    commit('undo the unlink')
    conn.sync()
    # Unlink tree entries; undo a change before the pack time.
    gone = root['tree']['k0007']
    for k in ('k0007', 'k0008', 'k0009'):
        del root['tree'][k]
    commit('unlink')
    root['meta']['before_undo'] = 1
    commit()
    db.undo(db.undoLog(0, 1)[0]['id'])
    commit('undo meta')
    conn.sync()
    pack_time = time.time()
    tick()
    for i in range(150, 190):
        root['tree']['k%04d' % i] = PersistentMapping({'i': i})
        if i % 13 == 0:
            root['meta']['late'] = i
        commit('late %d' % i)
    with root['blobs']['b50'].open('w') as f:
        f.write(b'b50 after pack')
    commit('late blob')
    root['meta']['x'] = 1
    commit()
    db.undo(db.undoLog(0, 1)[0]['id'])
    commit('undo late')
    conn.sync()
    if late_undo:
        db.undo(late_target)
        commit('undo across the pack time')
        conn.sync()
    oid, serial = gone._p_oid, gone._p_serial
    conn.close()
    t = TransactionMetaData(description='delete k0007')
    fs.tpc_begin(t)
    fs.deleteObject(oid, serial, t)
    fs.tpc_vote(t)
    fs.tpc_finish(t)
    db.close()
    json.dump({'pack_time': pack_time}, sys.stdout)


def pack(path, blob_dir, t, gc):
    fs = FileStorage(path, blob_dir=blob_dir, pack_gc=gc, pack_keep_old=True)
    err = None
    try:
        fs.pack(t, referencesf)
    except Exception as e:  # reported to the Go test, which asserts on it
        err = type(e).__name__
    fs.close()
    json.dump({'error': err}, sys.stdout)


if __name__ == '__main__':
    if sys.argv[1] == 'make':
        make(sys.argv[2], sys.argv[3], sys.argv[4] == '1')
    else:
        pack(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == '1')
