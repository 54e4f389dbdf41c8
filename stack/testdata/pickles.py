"""Writes, as JSON on stdout, ZODB data records and transaction extensions
produced by the real Python ZODB, for stack/pickle_test.go:

  records:    [{"name", "data" (hex), "refs" ([hex oid] from ZODB's referencesf)}]
  extensions: [{"name", "data" (hex)}]

Run with the interop virtualenv's python.
"""
import datetime
import io
import json
import sys

import persistent
import persistent.mapping
import persistent.wref
import transaction
import ZODB
import ZODB.MappingStorage
from BTrees.OOBTree import OOBTree
from ZODB._compat import dumps
from ZODB.serialize import referencesf
import zodbpickle.pickle


class Thing(persistent.Persistent):
    pass


class NewArgs(persistent.Persistent):
    """Its references are written as a bare oid (no class)."""

    def __getnewargs__(self):
        return ()


class Plain(object):
    """A non-persistent sub-object: pickled with NEWOBJ and BUILD."""


def zodb_records():
    db = ZODB.DB(ZODB.MappingStorage.MappingStorage())
    conn = db.open()
    root = conn.root()
    a, b, c = Thing(), NewArgs(), Thing()
    root['a'] = a
    root['b'] = b
    a.weak = persistent.wref.WeakRef(c)
    a.strong_c = c
    plain = Plain()
    plain.ref = b
    plain.when = datetime.datetime(2020, 1, 2, 3, 4, 5)
    root['plain'] = plain
    root['list'] = [a, b, a]
    tree = OOBTree()
    tree['x'] = c
    root['tree'] = tree
    transaction.commit()
    out = []
    storage = db.storage
    for t in storage.iterator():
        for r in t:
            out.append({'name': 'zodb-%d-%s' % (len(out), r.oid.hex()), 'data': r.data.hex(),
                        'refs': [o.hex() for o in referencesf(r.data)]})
    db.close()
    return out


def oid(n):
    return (n).to_bytes(8, 'big')


def crafted(name, protocol, pids, wrap=bytes):
    """A record whose state holds persistent ids of the given forms,
    written as ObjectWriter does: one pickler (one memo) for both pickles."""
    f = io.BytesIO()
    p = zodbpickle.pickle.Pickler(f, protocol)
    p.persistent_id = lambda obj: obj.pid if isinstance(obj, Pid) else None
    p.dump((Thing, None))
    p.dump({'refs': [Pid(x) for x in pids]})
    data = f.getvalue()
    return {'name': name, 'data': data.hex(),
            'refs': [o.hex() for o in referencesf(data)]}


class Pid(object):
    def __init__(self, pid):
        self.pid = pid


def crafted_records():
    return [
        crafted('forms-p3', 3, [
            oid(1),
            (oid(2), Thing),
            ['w', (oid(3),)],
            ['w', (oid(4), 'otherdb')],
            ['m', ('otherdb', oid(5), Thing)],
            ['n', ('otherdb', oid(6))],
            (oid(2), Thing),
        ]),
        py2_record('py2-p1', 1),
        py2_record('py2-p2', 2),
    ]


def py2_record(name, protocol):
    """A record as Python 2 ZODB wrote it: oids are py2 str
    (SHORT_BINSTRING), classes GLOBALs, both pickles share the memo."""
    def s(b):
        return b'U' + bytes([len(b)]) + b
    proto = b'\x80\x02' if protocol == 2 else b''
    klass = proto + b'(c__main__\nThing\nq\x00Ntq\x01.'
    state = (proto + b'}q\x02' + s(b'refs') + b'q\x03](' +
             s(oid(7)) + b'Q' +                           # bare oid
             b'(' + s(oid(8)) + b'h\x00tQ' +              # (oid, class) via the memo
             b'(' + s(b'w') + b'(' + s(oid(9)) + b'tlQ' +  # ['w', (oid,)]
             b'es.')
    data = klass + state
    return {'name': name, 'data': data.hex(),
            'refs': [o.hex() for o in referencesf(data)]}


EXTENSIONS = {
    'kv': {'k': 'v'},
    'types': dict(sorted({
        'user_name': 'alice', 'n': 5, 'n2': 300, 'n4': 70000, 'neg': -3,
        'big': 2 ** 40, 'nbig': -(2 ** 40), 'f': 1.5, 't': True, 'fa': False,
        'none': None, 'b': b'\x00\xff', 'list': [1, 'x'], 'one': ['y'],
        'nested': {'a': 1}, 'tuple': (1, 2), 'empty': {}, 'uni': 'h\xe9llo',
    }.items())),
    'many': {'k%03d' % i: i for i in range(300)},
}


def extensions():
    out = [{'name': k, 'data': dumps(v, 3).hex()} for k, v in EXTENSIONS.items()]
    # {'user': 'bob', 'raw': '\xff'} as Python 2 ZODB wrote it (py2 str).
    p1 = b'}q\x00(U\x04userq\x01U\x03bobq\x02U\x03rawq\x03U\x01\xffq\x04u.'
    out.append({'name': 'py2-p0', 'data': (
        b"(dp0\nS'user'\np1\nS'bob'\np2\nsS'raw'\np3\nS'\\xff'\np4\ns.").hex()})
    out.append({'name': 'py2-p1', 'data': p1.hex()})
    out.append({'name': 'py2-p2', 'data': (b'\x80\x02' + p1).hex()})
    return out


json.dump({'records': zodb_records() + crafted_records(),
           'extensions': extensions()}, sys.stdout, indent=1)
