# One Python ZODB client of `zeoraid bench`: it connects with ZEO's
# ClientStorage, prints "ready", waits for a line on stdin, then for the
# given seconds either loads objects (cache misses: the call goes to the
# server every time, as loadBefore does when the cache misses) or commits
# one-object transactions, and prints how many it did.
import sys
import time

from ZEO.ClientStorage import ClientStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import maxtid, p64

addr, mode, seconds, oidfile = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
host, port = addr.rsplit(":", 1)
cs = ClientStorage((host, int(port)), storage="1", wait_timeout=60)
oids = [p64(int(line, 16)) for line in open(oidfile) if line.strip()]
record = b"\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.\x80\x03}q\x01X\x04\x00\x00\x00dataq\x02C\x04abcdq\x03s."

def commit(oid, serial):
    t = TransactionMetaData()
    cs.tpc_begin(t)
    cs.store(oid, serial, record, "", t)
    cs.tpc_vote(t)
    return cs.tpc_finish(t)

if mode == "commit":
    mine = cs.new_oid()
    serial = commit(mine, b"\0" * 8)
print("ready", flush=True)
sys.stdin.readline()
n = 0
i = 0
deadline = time.time() + seconds
while time.time() < deadline:
    if mode == "load":
        cs._server.call("loadBefore", oids[i % len(oids)], maxtid)
        i += 7
    else:
        serial = commit(mine, serial)
    n += 1
print(n, flush=True)
cs.close()
