"""An application process for the RAID interop tests (interop/raid_test.go).

Usage: raid_agent.py HOST:PORT BLOB_DIR [STORAGE]

Opens ZODB.DB over ZEO.ClientStorage of storage STORAGE (default 1, with a
blob cache in BLOB_DIR) and
reads one JSON command per line on stdin, answering each with one JSON
line on stdout: {"ok": true, ...} or {"ok": false, "error": "Class: msg"}.
Tids are 16 hex digits.

Commands ("op"):
  init trees                 create root["map"], root["blobs"], root["tree"]
                             and one OOBTree root[name] per name in trees
  set key value [note]       map[key] = value; commit (with note as the
                             description); the tid
  raw_load                   loadSerial of root["map"] from the server,
                             past every cache
  get key                    new transaction; map[key]
  prepare_set key value      map[key] = value without committing
  prepare_insert keys        insert keys into the OOBTree root["tree"]
  commit / abort             end the current transaction
  tree_keys                  new transaction; keys of root["tree"]
  resolved                   how many conflicts the client resolved
  connected timeout          wait until the storage is connected
  connections                how many times the ClientStorage connected and
                             was disconnected since the agent started
  paused key value at marker release
                             map[key] = value and commit, pausing at "at"
                             (stores: after the stores reached the server,
                             before the vote; finish: after the vote, before
                             tpc_finish): create file marker, wait for file
                             release
  blob_set key size seed     a Blob of size random bytes in blobs[key]
  blob_get key               sha256 and size of blobs[key]
  undo description           undo the newest transaction with that
                             description; the undo's tid
  pack                       pack to now
  run tree prefix seconds [pause] [stop] [read]
                             commit tree[prefix-N] = random value, one per
                             transaction (pause seconds apart), for seconds
                             or until the file stop exists; with read, load
                             the tree's new revision from the server after
                             each commit; every acknowledged
                             [key, value, last tid] and every error
  check tree entries         new transaction; the entries [key, value]
                             of root[tree] that are missing or differ
"""

import hashlib
import json
import os
import random
import sys
import time

import transaction
import ZEO.ClientStorage
import ZODB
import ZODB.blob
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

resolved = [0]
_orig_resolve = ZEO.ClientStorage.ClientStorage.tryToResolveConflict


def _counting_resolve(self, *args, **kw):
    data = _orig_resolve(self, *args, **kw)
    resolved[0] += 1
    return data


ZEO.ClientStorage.ClientStorage.tryToResolveConflict = _counting_resolve

# Connections and disconnections of the ClientStorage, as ZEO's client
# thread reports them (patched on the class: the first connection happens
# inside the constructor).
connections = {'connects': 0, 'disconnects': 0}
_orig_connected = ZEO.ClientStorage.ClientStorage.notify_connected
_orig_disconnected = ZEO.ClientStorage.ClientStorage.notify_disconnected


def _counting_connected(self, conn, info):
    connections['connects'] += 1
    return _orig_connected(self, conn, info)


def _counting_disconnected(self):
    connections['disconnects'] += 1
    return _orig_disconnected(self)


ZEO.ClientStorage.ClientStorage.notify_connected = _counting_connected
ZEO.ClientStorage.ClientStorage.notify_disconnected = _counting_disconnected


def hexid(b):
    return b.hex()


class Pause:
    """A resource manager that pauses the commit at one point."""

    def __init__(self, at, marker, release):
        self.at, self.marker, self.release = at, marker, release

    def sortKey(self):
        return '~~~ after every connection'

    def _pause(self, where):
        if where != self.at:
            return
        with open(self.marker, 'w') as f:
            f.write(where)
        deadline = time.time() + 120
        while not os.path.exists(self.release):
            if time.time() > deadline:
                raise RuntimeError('no release file within 120 s')
            time.sleep(0.02)

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        self._pause('stores')

    def tpc_vote(self, txn):
        self._pause('finish')

    def tpc_finish(self, txn):
        pass

    def tpc_abort(self, txn):
        pass

    def abort(self, txn):
        pass


def main():
    host, _, port = sys.argv[1].rpartition(':')
    name = sys.argv[3] if len(sys.argv) > 3 else '1'
    storage = ZEO.ClientStorage.ClientStorage(
        (host, int(port)), storage=name, blob_dir=sys.argv[2], wait_timeout=30,
        min_disconnect_poll=0.1, max_disconnect_poll=0.5)
    db = ZODB.DB(storage)
    tm = transaction.TransactionManager()
    conn = db.open(tm)

    def fresh():
        tm.abort()
        tm.begin()
        return conn.root()

    def commit_tid(obj):
        tm.commit()
        return hexid(obj._p_serial)

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd['op']
        try:
            out = {}
            if op == 'info':
                from importlib.metadata import version
                out = {'zeo': version('ZEO'), 'zodb': version('ZODB')}
            elif op == 'init':
                r = fresh()
                for name, factory in (('map', PersistentMapping),
                                      ('blobs', PersistentMapping),
                                      ('tree', OOBTree)):
                    if name not in r:
                        r[name] = factory()
                for name in cmd.get('trees', []):
                    if name not in r:
                        r[name] = OOBTree()
                tm.commit()
            elif op == 'set':
                r = fresh()
                r['map'][cmd['key']] = cmd['value']
                if cmd.get('note'):
                    tm.get().note(cmd['note'])
                out['tid'] = commit_tid(r['map'])
            elif op == 'raw_load':
                m = fresh()['map']
                data = storage.loadSerial(m._p_oid, m._p_serial)
                out['size'] = len(data)
            elif op == 'get':
                out['value'] = fresh()['map'].get(cmd['key'])
            elif op == 'prepare_set':
                fresh()['map'][cmd['key']] = cmd['value']
            elif op == 'prepare_insert':
                r = fresh()
                for k in cmd['keys']:
                    r['tree'][k] = k
            elif op == 'commit':
                tm.commit()
            elif op == 'abort':
                tm.abort()
            elif op == 'tree_keys':
                out['keys'] = list(fresh()['tree'].keys())
            elif op == 'connected':
                deadline = time.time() + cmd['timeout']
                while not storage.is_connected() and time.time() < deadline:
                    time.sleep(0.05)
                out['connected'] = storage.is_connected()
            elif op == 'resolved':
                out['resolved'] = resolved[0]
            elif op == 'connections':
                out.update(connections)
            elif op == 'paused':
                r = fresh()
                r['map'][cmd['key']] = cmd['value']
                tm.get().join(Pause(cmd['at'], cmd['marker'], cmd['release']))
                out['tid'] = commit_tid(r['map'])
            elif op == 'blob_set':
                data = random.Random(cmd['seed']).randbytes(cmd['size'])
                r = fresh()
                b = ZODB.blob.Blob()
                with b.open('w') as f:
                    f.write(data)
                r['blobs'][cmd['key']] = b
                out['tid'] = commit_tid(b)
                out['sha256'] = hashlib.sha256(data).hexdigest()
            elif op == 'blob_get':
                b = fresh()['blobs'][cmd['key']]
                with b.open('r') as f:
                    data = f.read()
                out = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
            elif op == 'undo':
                tm.abort()
                want = cmd['description']
                log = db.undoLog(0, 50)
                ids = [e['id'] for e in log
                       if (e['description'].decode() if isinstance(e['description'], bytes)
                           else e['description']) == want]
                if not ids:
                    raise LookupError('no undoable transaction described %r' % want)
                tm.begin()
                db.undo(ids[0], tm.get())
                tm.get().note('undo ' + want)
                tm.commit()
                out['tid'] = hexid(storage.lastTransaction())
            elif op == 'pack':
                tm.abort()
                db.pack()
            elif op == 'run':
                rnd = random.Random()
                acked, errors = [], []
                deadline = time.time() + cmd['seconds']
                stop = cmd.get('stop')
                n = 0
                while time.time() < deadline and not (stop and os.path.exists(stop)):
                    key = '%s-%d' % (cmd['prefix'], n)
                    value = rnd.randrange(1 << 30)
                    try:
                        r = fresh()
                        tree = r[cmd['tree']]
                        tree[key] = value
                        tm.commit()
                        if cmd.get('read'):
                            storage.loadSerial(tree._p_oid, tree._p_serial)
                        # lastTransaction right after the commit: its
                        # tid, or a later one another client committed.
                        acked.append([key, value, hexid(storage.lastTransaction())])
                        n += 1
                        time.sleep(cmd.get('pause', 0))
                    except Exception as e:
                        tm.abort()
                        errors.append('%s: %s: %s' % (key, type(e).__name__, e))
                        time.sleep(0.05)
                out = {'acked': acked, 'errors': errors}
            elif op == 'check':
                tree = fresh()[cmd['tree']]
                bad = []
                for key, value in cmd['entries']:
                    got = tree.get(key)
                    if got != value:
                        bad.append([key, value, got])
                out = {'bad': bad, 'size': len(tree)}
            else:
                raise ValueError('unknown op %r' % op)
            out['ok'] = True
        except Exception as e:
            tm.abort()
            out = {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + '\n')
        sys.stdout.flush()
    conn.close()
    db.close()


if __name__ == '__main__':
    main()
