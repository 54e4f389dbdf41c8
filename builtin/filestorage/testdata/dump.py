"""Dump what Python's FileStorage answers for a Data.fs, as JSON.

Usage: dump.py PATH

Opens PATH read-only and prints: the tids, every oid's loadBefore at every
tid and at maxtid, history sizes, the undo log, the iterator's records, and
whether the saved .index (if any) equals the index Python builds by
scanning. With --copy, also reports whether copyTransactionsFrom into a
fresh FileStorage gives a byte-identical file, and if not but the lengths
agree, the offsets of the bytes that differ.
"""
import json
import os
import sys
import tempfile

from ZODB.FileStorage import FileStorage
from ZODB.fsIndex import fsIndex
from ZODB.POSException import POSKeyError
from ZODB.utils import maxtid


def hx(b):
    return None if b is None else b.hex()


def main(path, copy):
    fs = FileStorage(path, read_only=True)
    tids, records = [], []
    for txn in fs.iterator():
        tids.append(txn.tid)
        recs = []
        for r in txn:
            recs.append({'oid': hx(r.oid), 'tid': hx(r.tid), 'data': hx(r.data),
                         'data_txn': hx(r.data_txn)})
        records.append({'tid': hx(txn.tid), 'status': txn.status,
                        'user': hx(txn.user), 'description': hx(txn.description),
                        'extension': hx(txn.extension_bytes), 'records': recs})
    loads = {}
    oids = sorted(fs._index.keys())
    for oid in oids:
        answers = []
        for before in tids + [maxtid]:
            try:
                r = fs.loadBefore(oid, before)
            except POSKeyError:
                answers.append('POSKeyError')
                continue
            if r is None:
                answers.append(None)
            else:
                answers.append([hx(r[0]), hx(r[1]), hx(r[2])])
        loads[hx(oid)] = answers
    undo = [{'id': d['id'].decode(), 'size': d['size']} for d in fs.undoLog(0, 1000)]
    out = {'tids': [hx(t) for t in tids], 'loads': loads, 'undo': undo,
           'records': records, 'size': fs.getSize(), 'len': len(fs)}
    if os.path.exists(path + '.index'):
        saved = fsIndex.load(path + '.index')
        out['index_pos_ok'] = saved['pos'] == fs._pos
        out['index_ok'] = dict(saved['index'].items()) == dict(fs._index.items())
    fs.close()
    if copy:
        d = tempfile.mkdtemp()
        dst = FileStorage(os.path.join(d, 'copy.fs'))
        src = FileStorage(path, read_only=True)
        dst.copyTransactionsFrom(src)
        src.close()
        dst.close()
        with open(path, 'rb') as a, open(os.path.join(d, 'copy.fs'), 'rb') as b:
            orig, copied = a.read(), b.read()
        out['copy_identical'] = orig == copied
        if len(orig) == len(copied):
            out['copy_diff'] = [i for i in range(len(orig)) if orig[i] != copied[i]]
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main(sys.argv[1], '--copy' in sys.argv[2:])
