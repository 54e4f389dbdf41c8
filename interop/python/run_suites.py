"""Run ZEO's and ZODB's own test classes against zeoraid.

Usage: run_suites.py --out RESULT.json [--timeout SECONDS] [--resume]
                     [--match REGEX] CLASS...

CLASS is ``module:Class`` (for example ``ZEO.tests.testZEO:MappingStorageTests``),
``module:doctests`` for the doctests (and doctest files) of a module's
test_suite(), or
one of the classes this file assembles (``interop:Name``, see LOCAL). Test
methods with the ``check`` and the ``test`` prefix are both loaded, as ZEO's
own test_suite does.

Every server the tests start is a zeoraid server (zeoraid_forker). The
result file maps each test id to {"status": pass|fail|error|skip,
"message": ..., "seconds": ...}; it is rewritten after every test, and the
test about to run is recorded under "running". A test that runs longer than
--timeout makes the process dump its threads' stacks and exit with status
3; with --resume a new run skips the tests already recorded, so the caller
can mark the hung test and go on.
"""

import argparse
import doctest
import faulthandler
import importlib
import json
import os
import re
import sys
import tempfile
import time
import traceback
import unittest

import zope.testing.setupstack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zeoraid_forker  # noqa: E402

# ZEORAID_REFERENCE=1 leaves ZEO's own forker in place, so the same tests
# run against the Python server: a differential check of what upstream
# itself passes.
if not os.environ.get('ZEORAID_REFERENCE'):
    zeoraid_forker.install()


def _local_classes():
    """Classes assembled here from ZEO's and ZODB's mixins."""
    from ZODB.tests import HistoryStorage
    from ZEO.tests import ConnectionTests, InvalidationTests, testZEO
    from ZEO.tests.testConnection import MappingStorageConfig

    class MappingStorageFullTests(testZEO.FullGenericTests,
                                  HistoryStorage.HistoryStorage):
        """FullGenericTests (undo, revisions, iteration, conflict
        resolution) and HistoryStorage over zeoraid's history-preserving
        mappingstorage."""

        def getConfig(self):
            return "<mappingstorage 1/>"

    class MappingStorageInvalidationTests(MappingStorageConfig,
                                          ConnectionTests.CommonSetupTearDown,
                                          InvalidationTests.InvalidationTests):
        """ZEO's invalidation stress tests over mappingstorage."""

    classes = [MappingStorageFullTests, MappingStorageInvalidationTests]
    for c in classes:
        c.__module__ = 'interop'
        c.__qualname__ = c.__name__
    return {c.__name__: c for c in classes}


def load(spec):
    mod_name, _, name = spec.partition(':')
    if mod_name == 'interop':
        return _load_case(_local_classes()[name])
    mod = importlib.import_module(mod_name)
    if name == 'doctests':
        # The module's own test_suite() builds its doctests with the right
        # setUp and output normalisation; keep only those.
        suite = unittest.TestSuite()
        for t in flatten(mod.test_suite()):
            if isinstance(t, doctest.DocTestCase):
                suite.addTest(t)
        return suite
    klass = getattr(mod, name, None)
    if klass is None:
        # A class the module's test_suite() builds elsewhere, such as
        # ZODB's blob undo tests that testblob.storage_reusable_suite
        # makes for ZEO's ClientStorage.
        suite = unittest.TestSuite()
        for t in flatten(mod.test_suite()):
            if type(t).__name__ == name:
                suite.addTest(t)
        if not suite.countTestCases():
            raise LookupError('%s has no test class %s' % (mod_name, name))
        return suite
    return _load_case(klass)


def _load_case(klass):
    suite = unittest.TestSuite()
    seen = set()
    for prefix in ('check', 'test'):
        loader = unittest.TestLoader()
        loader.testMethodPrefix = prefix
        for t in loader.loadTestsFromTestCase(klass):
            if t.id() not in seen:
                seen.add(t.id())
                suite.addTest(t)
    return suite


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


class Recorder(unittest.TestResult):
    """Keeps one test's outcome."""

    def __init__(self):
        super().__init__()
        self.status, self.message = 'pass', ''

    def _set(self, status, test, err):
        if self.status in ('fail', 'error'):
            return
        self.status = status
        self.message = ''.join(traceback.format_exception(*err))[-4000:]

    def addFailure(self, test, err):
        self._set('fail', test, err)

    def addError(self, test, err):
        self._set('error', test, err)

    def addSkip(self, test, reason):
        self.status, self.message = 'skip', reason

    def addExpectedFailure(self, test, err):
        self.status, self.message = 'pass', 'expected failure (decorated upstream)'

    def addUnexpectedSuccess(self, test):
        self.status, self.message = 'fail', 'unexpected success'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--timeout', type=float, default=120)
    ap.add_argument('--resume', action='store_true')
    ap.add_argument('--match', default='')
    ap.add_argument('classes', nargs='+')
    args = ap.parse_args()

    result = {'tests': {}, 'refused': [], 'running': None}
    if args.resume and os.path.exists(args.out):
        with open(args.out) as f:
            result = json.load(f)
        result['running'] = None
    match = re.compile(args.match) if args.match else None

    def save():
        result['refused'] = sorted(set(result.get('refused', []))
                                   | set(zeoraid_forker.REFUSED))
        tmp = args.out + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(result, f, indent=1, sort_keys=True)
        os.replace(tmp, args.out)

    tests = []
    for spec in args.classes:
        try:
            tests.extend(flatten(load(spec)))
        except Exception:
            result['tests'][spec] = {'status': 'error', 'seconds': 0,
                                     'message': 'cannot load: ' + traceback.format_exc()[-2000:]}
    top = os.getcwd()
    ids = []
    for t in tests:
        # Suites built twice from the same doctest files (ZODB's blob
        # suites for shared and non-shared blob directories) repeat ids.
        tid, n = t.id(), 2
        while tid in ids:
            tid, n = '%s@%d' % (t.id(), n), n + 1
        ids.append(tid)
    for t, tid in zip(tests, ids):
        if tid in result['tests'] or (match and not match.search(tid)):
            continue
        result['running'] = tid
        save()
        print('RUN', tid, flush=True)
        work = tempfile.mkdtemp(prefix='t-', dir=top)
        os.chdir(work)
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        rec = Recorder()
        start = time.time()
        tempdir = tempfile.tempdir
        try:
            t.run(rec)
        finally:
            faulthandler.cancel_dump_traceback_later()
            # A setUp that fails (a refused configuration) leaves what it
            # registered for tearDown: tempfile.tempdir and the working
            # directory inside its own directory, and so on. Undo it, or
            # the next tests nest ever deeper and fail for another reason.
            zope.testing.setupstack.tearDown(t)
            tempfile.tempdir = tempdir
            os.chdir(top)
        result['tests'][tid] = {'status': rec.status, 'message': rec.message,
                                'seconds': round(time.time() - start, 2)}
        print(' ', rec.status.upper(), '%.1fs' % (time.time() - start), flush=True)
        if rec.status in ('fail', 'error'):
            print(rec.message, flush=True)
    result['running'] = None
    save()


if __name__ == '__main__':
    main()
