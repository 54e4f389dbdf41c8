"""Time Python's FileStorage for comparison with the Go benchmarks.

Usage: bench.py ops PATH SECONDS   -> JSON {"loads_per_sec": .., "iterated_records_per_sec": .., "commits_per_sec": ..}
       bench.py open PATH           -> JSON {"open_sec": .., "maxrss_kb": .., "base_rss_kb": .., "rss_after_gc_kb": .., "objects": ..}
       bench.py pack PATH           -> JSON {"pack_sec": .., "maxrss_kb": ..}

ops opens PATH, calls loadBefore(oid, maxtid) on random oids of the file
for SECONDS, reads every record with the iterator once, then commits one 200-byte store per transaction
(tpc_begin, store, tpc_vote, tpc_finish) for SECONDS. It changes PATH:
give it a copy.

open measures FileStorage(PATH, read_only=True): wall time, the
process's peak resident size (VmHWM) before and after, and its resident
size after a garbage collection.

pack packs PATH without GC at the present and reports its wall time and
the process's peak resident size.
"""
import gc
import json
import random
import sys
import time

from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf
from ZODB.utils import maxtid


def ops(path, seconds):
    fs = FileStorage(path)
    oids = list(fs._index.keys())
    rng = random.Random(1)
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(256):
            fs.loadBefore(rng.choice(oids), maxtid)
        n += 256
        now = time.perf_counter()
        if now >= deadline:
            break
    loads = n / (now - start)
    n = 0
    start = time.perf_counter()
    for txn in fs.iterator():
        for r in txn:
            n += 1
    records = n / (time.perf_counter() - start)
    data = b'\x80\x03}q\x00.' + b'x' * 193
    oid = fs.new_oid()
    serial = b'\0' * 8
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        t = TransactionMetaData()
        fs.tpc_begin(t)
        fs.store(oid, serial, data, '', t)
        fs.tpc_vote(t)
        serial = fs.tpc_finish(t)
        n += 1
    commits = n / (time.perf_counter() - start)
    fs.close()
    json.dump({'loads_per_sec': loads, 'iterated_records_per_sec': records,
               'commits_per_sec': commits}, sys.stdout)


def status_kb(field):
    # ru_maxrss would include the parent's memory before exec.
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return -1


def open_(path):
    base = status_kb('VmHWM')
    start = time.perf_counter()
    fs = FileStorage(path, read_only=True)
    elapsed = time.perf_counter() - start
    gc.collect()
    out = {'open_sec': elapsed, 'maxrss_kb': status_kb('VmHWM'), 'base_rss_kb': base,
           'rss_after_gc_kb': status_kb('VmRSS'), 'objects': len(fs)}
    fs.close()
    json.dump(out, sys.stdout)


def pack(path):
    fs = FileStorage(path, pack_gc=False)
    time.sleep(0.01)
    start = time.perf_counter()
    fs.pack(time.time(), referencesf)
    elapsed = time.perf_counter() - start
    out = {'pack_sec': elapsed, 'maxrss_kb': status_kb('VmHWM')}
    fs.close()
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    {'ops': lambda: ops(sys.argv[2], float(sys.argv[3])),
     'open': lambda: open_(sys.argv[2]),
     'pack': lambda: pack(sys.argv[2])}[sys.argv[1]]()
