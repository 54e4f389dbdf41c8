"""An application process for the application-level interop test.

Usage: app_agent.py HOST:PORT

Opens ZODB.DB over ZEO.ClientStorage (whichever ZEO the interpreter has)
and then reads one JSON command per line on stdin, answering each with one
JSON line on stdout: {"ok": true, ...} or {"ok": false, "error": "..."}.
The Go test drives two of these against one zeoraid server.

Commands ("op"):
  info                       ZEO and ZODB versions, the protocol in use
  set key value              root["map"][key] = value; commit
  get key                    start a new transaction, return root["map"][key]
  prepare_insert keys        start a transaction and insert keys into the
                             OOBTree root["tree"], without committing
  commit                     commit the current transaction
  tree_keys                  new transaction; the keys of root["tree"]
  big size seed              store size random bytes in root["big"]
  big_digest                 new transaction; sha256 of that object
  many n                     n transactions, each incrementing a counter
  wait key value timeout     poll (new transactions) until map[key] == value
  connected timeout          wait until the storage is connected
  resolved                   how many conflicts the client resolved
"""

import hashlib
import json
import random
import sys
import time

import transaction
import ZEO
import ZEO.ClientStorage
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError

resolved = [0]
_orig_resolve = ZEO.ClientStorage.ClientStorage.tryToResolveConflict


def _counting_resolve(self, *args, **kw):
    data = _orig_resolve(self, *args, **kw)
    resolved[0] += 1
    return data


ZEO.ClientStorage.ClientStorage.tryToResolveConflict = _counting_resolve


def main():
    host, _, port = sys.argv[1].rpartition(':')
    storage = ZEO.ClientStorage.ClientStorage(
        (host, int(port)), wait_timeout=30, min_disconnect_poll=0.1,
        max_disconnect_poll=0.5)
    db = ZODB.DB(storage)
    tm = transaction.TransactionManager()
    conn = db.open(tm)

    def root():
        return conn.root()

    tm.begin()
    r = root()
    if 'map' not in r:
        r['map'] = PersistentMapping()
        r['tree'] = OOBTree()
        r['big'] = PersistentMapping()
        r['counter'] = PersistentMapping({'n': 0})
        try:
            tm.commit()
        except ConflictError:
            tm.abort()
    else:
        tm.abort()

    def fresh():
        tm.abort()
        tm.begin()
        return root()

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd['op']
        try:
            if op == 'info':
                from importlib.metadata import version
                try:
                    proto = storage._server.client.protocol.protocol_version
                except AttributeError:
                    proto = b'?'
                out = {'zeo': version('ZEO'), 'zodb': version('ZODB'),
                       'protocol': proto.decode()}
            elif op == 'set':
                r = fresh()
                r['map'][cmd['key']] = cmd['value']
                tm.commit()
                out = {}
            elif op == 'get':
                out = {'value': fresh()['map'].get(cmd['key'])}
            elif op == 'wait':
                deadline = time.time() + cmd['timeout']
                while True:
                    v = fresh()['map'].get(cmd['key'])
                    if v == cmd['value'] or time.time() > deadline:
                        break
                    time.sleep(0.05)
                out = {'value': v}
            elif op == 'prepare_insert':
                r = fresh()
                for k in cmd['keys']:
                    r['tree'][k] = k
                out = {}
            elif op == 'commit':
                tm.commit()
                out = {}
            elif op == 'tree_keys':
                out = {'keys': list(fresh()['tree'].keys())}
            elif op == 'big':
                rnd = random.Random(cmd['seed'])
                data = rnd.randbytes(cmd['size'])
                r = fresh()
                r['big']['data'] = data
                tm.commit()
                out = {'sha256': hashlib.sha256(data).hexdigest()}
            elif op == 'big_digest':
                data = fresh()['big'].get('data', b'')
                out = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
            elif op == 'many':
                for _ in range(cmd['n']):
                    r = fresh()
                    r['counter']['n'] += 1
                    tm.commit()
                out = {'n': fresh()['counter']['n']}
            elif op == 'counter':
                out = {'n': fresh()['counter']['n']}
            elif op == 'connected':
                deadline = time.time() + cmd['timeout']
                while not storage.is_connected() and time.time() < deadline:
                    time.sleep(0.05)
                out = {'connected': storage.is_connected()}
            elif op == 'resolved':
                out = {'resolved': resolved[0]}
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
