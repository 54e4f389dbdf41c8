"""The client of the README's RAID demo: one transaction that increments
a counter in the database on 127.0.0.1:PORT (default 8100), then prints it.

Usage: python examples/demo_client.py [PORT]
"""

import sys

import ZEO
from persistent.mapping import PersistentMapping

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8100
db = ZEO.DB(('127.0.0.1', port), wait_timeout=30)
with db.transaction() as conn:
    root = conn.root()
    if 'demo' not in root:
        root['demo'] = PersistentMapping(counter=0)
    root['demo']['counter'] += 1
with db.transaction() as conn:
    print('counter =', conn.root()['demo']['counter'])
db.close()
