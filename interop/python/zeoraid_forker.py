"""Start zeoraid instead of runzeo wherever ZEO's test suites start a server.

ZEO's black-box tests start servers only through
``ZEO._forker.start_zeo_server`` (re-exported as
``ZEO.tests.forker.start_zeo_server`` and used by ``ZEO.server()``).
``install()`` replaces it with ``start_zeoraid_server``, which writes the
same zeo.conf text, runs the zeoraid binary named by ``$ZEORAID_BIN`` with
``serve -C FILE --ready-file FILE`` and returns ``(addr, stop)`` like the
original; ``stop`` sends SIGTERM and waits.

Storage configurations zeoraid cannot serve are translated when the
meaning is kept, and refused (``UnsupportedConfig``) otherwise:

* when zeoraid has no ``<blobstorage>`` type, ``<blobstorage> blob-dir D
  <filestorage> path P </filestorage> </blobstorage>`` becomes
  ``<filestorage> path P blob-dir D </filestorage>`` (zeoraid's filestorage
  has the blob-dir key itself);
* any section type zeoraid does not list in ``zeoraid types``
  (``<filestorage>`` before it exists, ``<demostorage>``, ZODB's test
  wrappers ``<hexstorage>``, ``<serverhexstorage>``,
  ``<loaddelayed_storage>``) is refused, as is the ``protocol=`` argument
  (zeoraid always announces Z5 or M5).

Every refusal is recorded in ``REFUSED`` so the runner can report it.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

REFUSED = []  # (reason) strings, one per refused start
STARTED = []  # count of servers started, for the report


class UnsupportedConfig(Exception):
    """The test asked for a server configuration zeoraid cannot serve."""


_types = None


def zeoraid_bin():
    path = os.environ.get("ZEORAID_BIN")
    if not path:
        raise RuntimeError("ZEORAID_BIN is not set: the path of the zeoraid binary")
    return path


def supported_types():
    """The storage section types the zeoraid binary registers."""
    global _types
    if _types is None:
        out = subprocess.run([zeoraid_bin(), "types"], check=True,
                             capture_output=True, text=True).stdout
        _types = set(re.findall(r"^<([A-Za-z0-9_.-]+)>", out, re.M))
    return _types


_SECTION = re.compile(r"<\s*([A-Za-z0-9_.-]+)(?:\s+([^>/\s]+))?\s*(/?)>")


# ZEORAID_BACKEND=NAME serves every <filestorage> of a test as another
# storage type: its section type, the suffix its path gets (so a test's
# Data.fs name becomes a directory or file of that backend), the %import it
# needs, and the filestorage keys it shares.
BACKENDS = {
    'badger': ('badgerstorage', '.badger', None),
    'sqlite': ('sqlitestorage', '.sqlite', 'sqlite'),
}
_SHARED_KEYS = ('path', 'blob-dir', 'read-only', 'pack-gc')


def as_backend(text, backend):
    """text with each <filestorage> section rewritten as the backend's."""
    try:
        kind, suffix, imp = BACKENDS[backend]
    except KeyError:
        raise RuntimeError('ZEORAID_BACKEND=%r: not one of %s' % (backend, sorted(BACKENDS)))

    def section(m):
        keys = []
        for line in m.group(2).splitlines():
            words = line.split(None, 1)
            if not words or words[0].lower() not in _SHARED_KEYS:
                continue
            if words[0].lower() == 'path':
                line = 'path %s%s' % (words[1].strip(), suffix)
            keys.append('  ' + line.strip())
        return '<%s%s>\n%s\n</%s>' % (kind, m.group(1) or '', '\n'.join(keys), kind)

    text = re.sub(r'<filestorage(\s+[^>\s]+)?\s*>(.*?)</filestorage>', section, text, flags=re.S | re.I)
    if imp:
        text = '%%import %s\n%s' % (imp, text)
    return text


def translate_storage_conf(conf):
    """Returns conf rewritten for zeoraid, or raises UnsupportedConfig."""
    lines = [l for l in conf.splitlines()
             if not l.strip().startswith("%import")]
    text = "\n".join(lines)
    m = re.search(
        r"<blobstorage(?:\s+([^>\s]+))?\s*>\s*blob-dir\s+(\S+)\s*"
        r"<filestorage(?:\s+[^>\s]+)?\s*>(.*?)</filestorage>\s*</blobstorage>",
        text, re.S | re.I)
    if m and 'blobstorage' not in supported_types():
        name = m.group(1) or ""
        inner = m.group(3).rstrip()
        text = (text[:m.start()] + "<filestorage %s>%s\nblob-dir %s\n</filestorage>"
                % (name, inner, m.group(2)) + text[m.end():])
    backend = os.environ.get('ZEORAID_BACKEND')
    if backend:
        text = as_backend(text, backend)
    types = supported_types()
    for sm in _SECTION.finditer(text):
        kind = sm.group(1).lower()
        if kind.startswith("/"):
            continue
        if kind not in types:
            reason = "<%s> is not a zeoraid storage type" % kind
            REFUSED.append(reason)
            raise UnsupportedConfig(reason)
    return text


def storage_paths(conf):
    """The Data.fs files a storage config names (its path values). Blob
    directories are kept, as Python's forker keeps them (FileStorage's
    cleanup removes only its own files): with a shared blob directory the
    client goes on using it after the server is stopped."""
    return re.findall(r"^\s*path\s+(\S+)", conf, re.M | re.I)


def start_zeoraid_server(storage_conf=None, zeo_conf=None, port=None, keep=False,
                         path='Data.fs', protocol=None, blob_dir=None,
                         suicide=True, debug=False, threaded=False,
                         start_timeout=33, name=None, log=None,
                         show_config=False):
    """Same arguments and result as ZEO._forker.start_zeo_server."""
    from ZEO import _forker

    if protocol:
        reason = "protocol=%r: zeoraid announces only Z5/M5" % (protocol,)
        REFUSED.append(reason)
        raise UnsupportedConfig(reason)
    if not storage_conf:
        storage_conf = '<filestorage>\npath %s\n</filestorage>' % path
    if blob_dir:
        storage_conf = ('<blobstorage>\nblob-dir %s\n%s\n</blobstorage>'
                        % (blob_dir, storage_conf))
    upstream_stop = None
    if os.environ.get('ZEORAID_CHAIN') == '1':
        # The chain: the storage itself is served by Python's runzeo, and
        # zeoraid serves a <zeoclient> of it.
        storage_conf, upstream_stop = chain_upstream(storage_conf, keep)
    raid = os.environ.get('ZEORAID_RAID')
    if raid == 'local':
        # A RAID of two copies of the storage, each with its own files.
        storage_conf = raid_of_copies(storage_conf)
    elif raid == 'zeo':
        # A RAID of two Python runzeo servers, each serving the storage.
        storage_conf, upstream_stop = raid_of_runzeos(storage_conf, keep)
    storage_conf = translate_storage_conf(storage_conf)

    if zeo_conf is None or isinstance(zeo_conf, dict):
        if port is None:
            port = 0
        addr = ('127.0.0.1', port) if isinstance(port, int) else port
        z = _forker.ZEOConfig(addr, log=log)
        if zeo_conf:
            z.__dict__.update(zeo_conf)
        zeo_conf = str(z)
    text = str(zeo_conf) + '\n\n' + storage_conf + '\n'
    if show_config:
        print(text)

    fd, conf_file = tempfile.mkstemp('.conf', prefix='ZEO_forker', dir=os.getcwd())
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    ready = conf_file + '.ready'
    log_dir = os.environ.get('ZEORAID_SERVER_LOGS')
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        err_path = os.path.join(log_dir, 'server-%d-%d.log' % (os.getpid(), len(STARTED)))
    else:
        err_path = conf_file + '.log'
    STARTED.append(conf_file)
    err = open(err_path, 'ab')
    err.write(('=== %s\n%s\n===\n' % (conf_file, text)).encode())
    err.flush()
    proc = subprocess.Popen(
        [zeoraid_bin(), 'serve', '-C', conf_file, '--ready-file', ready],
        stdin=subprocess.DEVNULL, stdout=err, stderr=err,
        preexec_fn=_die_with_parent)
    err.close()
    deadline = time.time() + start_timeout
    addr = None
    while time.time() < deadline:
        if os.path.exists(ready):
            with open(ready) as f:
                got = f.read().strip()
            if got:
                addr = got
                break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    if addr is None:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open(err_path, 'rb') as f:
            tail = f.read()[-2000:].decode(errors='replace')
        raise RuntimeError('zeoraid failed to start (exit %s):\n%s'
                           % (proc.returncode, tail))
    os.remove(conf_file)
    os.remove(ready)
    if isinstance(port, str) or ':' not in addr:
        result = port if isinstance(port, str) else addr  # a unix socket
    else:
        host, _, p = addr.rpartition(':')
        result = (host.strip('[]'), int(p))

    files = storage_paths(storage_conf)

    def stop(stop_timeout=99):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                print("WARNING zeoraid did not stop; killing it")
                proc.kill()
                proc.wait()
        if upstream_stop is not None:
            upstream_stop()
        if not keep:
            _cleanup(files)

    return result, stop


_original_start = None  # ZEO's own start_zeo_server, saved by install()


def chain_upstream(storage_conf, keep):
    """Starts Python's server on storage_conf and returns the zeoraid
    storage section that serves it through a <zeoclient>, and the stop
    function of the upstream server."""
    (host, port), up_stop = _original_start(storage_conf, keep=keep)
    m = _SECTION.search(storage_conf)
    name = (m.group(2) if m and m.group(2) else '1')
    blobs = ''
    if re.search(r'^\s*blob-dir\s', storage_conf, re.M | re.I):
        blobs = 'blob-dir %s\n' % tempfile.mkdtemp(prefix='zeoclient-blobs-', dir=os.getcwd())
    section = ('<zeoclient %s>\nserver %s:%d\nstorage %s\n%s</zeoclient>'
               % (name, host, port, name, blobs))
    return section, up_stop


def _section_name(storage_conf):
    m = _SECTION.search(storage_conf)
    return (m.group(2) if m and m.group(2) else '1')


def _renamed(storage_conf, name, suffix):
    """storage_conf with its outer section renamed and every path and
    blob-dir given a suffix, so two copies do not share files."""
    m = _SECTION.search(storage_conf)
    text = (storage_conf[:m.start()] + '<%s %s%s>' % (m.group(1), name, m.group(3))
            + storage_conf[m.end():])
    return re.sub(r'^(\s*(?:path|blob-dir)\s+)(\S+)', lambda k: k.group(1) + k.group(2) + suffix,
                  text, flags=re.M | re.I)


def raid_of_copies(storage_conf):
    """<raidstorage NAME> with two copies of the storage as its children."""
    name = _section_name(storage_conf)
    children = [_renamed(storage_conf, c, '.' + c) for c in ('a', 'b')]
    return '<raidstorage %s>\n%s\n%s\n</raidstorage>' % (name, children[0], children[1])


def raid_of_runzeos(storage_conf, keep):
    """<raidstorage NAME> over two runzeo servers, each serving its own copy
    of the storage, and the stop function of both."""
    name = _section_name(storage_conf)
    children, stops = [], []
    for c in ('a', 'b'):
        upstream = _renamed(storage_conf, name, '.' + c)
        section, stop = chain_upstream(upstream, keep)
        section = section.replace('<zeoclient %s>' % name, '<zeoclient %s>' % c, 1)
        children.append(section)
        stops.append(stop)

    def stop_all():
        for s in stops:
            s()
    return ('<raidstorage %s>\n%s\n%s\n</raidstorage>' % (name, children[0], children[1]),
            stop_all)


def _die_with_parent():
    """Makes the server get SIGTERM when the test process dies, so tests
    that never stop their servers (or a hung run that is killed) leave
    none behind (Linux only; elsewhere a no-op)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _cleanup(files):
    """Removes storage files like FileStorage.cleanup does."""
    for p in files:
        for q in (p, p + '.index', p + '.lock', p + '.tmp', p + '.old', p + '.pack', p + '-wal', p + '-shm'):
            try:
                os.remove(q)
            except OSError:
                pass
        if os.path.isdir(p):  # a Badger directory
            shutil.rmtree(p, ignore_errors=True)


def install():
    """Makes every ZEO test server a zeoraid server."""
    import ZEO._forker
    global _original_start
    if _original_start is None:
        _original_start = ZEO._forker.start_zeo_server
    ZEO._forker.start_zeo_server = start_zeoraid_server
    import ZEO.tests.forker
    ZEO.tests.forker.start_zeo_server = start_zeoraid_server
    import sys
    mod = sys.modules.get('ZEO.tests.testConfig')
    if mod is not None:
        mod.start_zeo_server = start_zeoraid_server
