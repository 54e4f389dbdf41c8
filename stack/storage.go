package stack

import (
	"context"
	"time"
)

// Revision is one revision of an object as loadBefore returns it.
type Revision struct {
	Data []byte // the pickle
	// Serial is the tid of the transaction that wrote this revision. The zero
	// Revision (Serial 0) means "the object exists but has no revision before
	// the requested tid" (ZODB's loadBefore returns None).
	Serial Tid
	// NextSerial is the tid of the next revision of the object, or 0 when this
	// revision is current (ZODB's end_tid None).
	NextSerial Tid
}

// Found reports whether the revision exists (loadBefore did not return None).
func (r Revision) Found() bool { return r.Serial != 0 }

// TxnMeta is the metadata of a transaction: tpc_begin's arguments.
type TxnMeta struct {
	User        []byte
	Description []byte
	// Extension is the pickled extension dict exactly as FileStorage stores
	// it (empty when there is none). Kept as bytes so copies stay
	// byte-identical; see DecodeExtension/EncodeExtension.
	Extension []byte
	// Tid is an explicit transaction id (restore and copy, or a RAID handing
	// its children its own tid); 0 lets the storage allocate one.
	Tid Tid
	// Status is the transaction status byte: ' ' normally, 'p' for a packed
	// transaction, 'u' for one whose undo information is incomplete. 0 means ' '.
	Status byte
}

// HistoryEntry is one revision in History (ZODB's history() dicts).
type HistoryEntry struct {
	Tid         Tid
	User        []byte
	Description []byte
	Extension   []byte // pickled extension dict, as in TxnMeta
	Size        int    // length of the revision's data
}

// Info describes a storage for get_info and the info message.
type Info struct {
	Name   string // FileStorage: its path; others: their configured name
	Length int64  // approximate number of objects
	Size   int64  // approximate size in bytes
}

// Event is one committed transaction as watchers see it: the tid and the oids
// whose current revision it changed (ZEO's invalidateTransaction).
type Event struct {
	Tid  Tid
	Oids []Oid
	// Reset says that anything may have changed up to Tid and nobody can
	// tell what (a zeoclient whose server could not say what it missed
	// while disconnected; a history rewritten by recovery): watchers drop
	// every cache. The server closes its clients' connections so they
	// reconnect and verify (docs/protocol.md §6.7).
	Reset bool
}

// Storage is the contract every node of the tree implements: ZODB's IStorage
// in Go. Methods are safe for concurrent use. Every method takes a context
// that bounds it; errors are the typed errors of this package, possibly
// wrapped in an OpError.
type Storage interface {
	// LoadBefore returns the newest revision of oid whose tid is strictly
	// less than before (ZODB loadBefore). It returns a *NotFoundError when
	// the oid never existed or the selected revision is a deletion, and the
	// zero Revision with a nil error when the object has no revision before
	// `before` (it was created later).
	LoadBefore(ctx context.Context, oid Oid, before Tid) (Revision, error)
	// LoadSerial returns the data written for oid by transaction serial
	// (ZODB loadSerial); *NotFoundError when there is none.
	LoadSerial(ctx context.Context, oid Oid, serial Tid) ([]byte, error)
	// History returns up to size revisions of oid, newest first (ZODB
	// history); *NotFoundError for an unknown oid.
	History(ctx context.Context, oid Oid, size int) ([]HistoryEntry, error)
	// LastTransaction is the tid of the last committed transaction, 0 when
	// the storage is empty (ZODB lastTransaction).
	LastTransaction(ctx context.Context) (Tid, error)
	// NewOIDs allocates n fresh oids, never 0 and never one handed out or
	// stored before (ZEO new_oids).
	NewOIDs(ctx context.Context, n int) ([]Oid, error)
	// Begin starts a transaction (ZODB tpc_begin). Only one transaction at a
	// time is in its vote..finish window; callers serialise commits with the
	// Mount's commit lock, storages may also block in Begin.
	Begin(ctx context.Context, meta TxnMeta) (Txn, error)
	// Watch registers ch to receive an Event for every transaction committed
	// after the returned tid, in strictly increasing tid order, whoever made
	// it. ch is closed by Unwatch or Close. Delivery never blocks a commit.
	Watch(ch chan<- Event) (at0 Tid)
	// Unwatch stops and closes ch.
	Unwatch(ch chan<- Event)
	// Info returns the storage's name, size and length (get_info).
	Info(ctx context.Context) (Info, error)
	// Capabilities reports what optional interfaces really work on this
	// storage; wrappers report what all their children support.
	Capabilities() Capabilities
	// Close releases the storage; later calls fail with ErrClosed.
	Close() error
}

// Txn is one storage transaction between Begin and Finish or Abort (ZODB's
// two-phase commit). A Txn is used by one goroutine at a time.
type Txn interface {
	// Store writes data for oid; serial is the tid the writer read (0 for a
	// new object); data must not be empty (ErrEmptyData, here or at Vote).
	// A write conflict may be reported here as *ConflictError
	// (the store then has no effect and the transaction goes on) or later by
	// Vote. Storing the same oid twice in one transaction keeps the last.
	Store(ctx context.Context, oid Oid, serial Tid, data []byte) error
	// CheckCurrentSerial asserts that serial is still oid's current tid at
	// vote time; otherwise Vote fails with *ReadConflictError (ZODB
	// checkCurrentSerialInTransaction).
	CheckCurrentSerial(ctx context.Context, oid Oid, serial Tid) error
	// Vote makes the transaction ready to commit (tpc_vote). Write conflicts
	// found here come back as a Conflicts error (all of them); other logical
	// errors as their typed error. On any error the caller must Abort.
	// resolved lists oids the storage changed on its own (undo), which
	// clients must invalidate rather than cache.
	Vote(ctx context.Context) (resolved []Oid, err error)
	// Finish commits and returns the transaction's tid (tpc_finish). When it
	// returns, the transaction is durable and visible to loads, and watchers
	// have been sent its Event.
	Finish(ctx context.Context) (Tid, error)
	// Abort discards the transaction (tpc_abort). It is safe after a failed
	// call and idempotent.
	Abort(ctx context.Context) error
}

// Capabilities lists the optional interfaces a storage really supports. A
// capability is usable only when reported here and the storage (or its Txn)
// implements the matching interface; use the As* helpers.
type Capabilities struct {
	ReadOnly   bool // every write fails with ErrReadOnly
	Iterate    bool // Iterator
	RecordIter bool // RecordIterator
	Restore    bool // Txn implements RestoreTxn and Begin honours TxnMeta.Tid/Status
	Undo       bool // Undoer, Txn implements UndoTxn
	Pack       bool // Packer
	Blobs      bool // Blobber, Txn implements BlobTxn
	Delete     bool // Txn implements DeleteTxn (IExternalGC)
}

// Iterator is ZODB's IStorageIteration: transactions in tid order.
type Iterator interface {
	// Iterate returns the committed transactions with start <= tid <= stop
	// (0 for either means unbounded), oldest first.
	Iterate(ctx context.Context, start, stop Tid) (TxnIterator, error)
}

// TxnIterator walks transactions; Close it when done.
type TxnIterator interface {
	// Next returns the next transaction, or ok false at the end.
	Next(ctx context.Context) (rec TxnRecord, ok bool, err error)
	Close() error
}

// TxnRecord is one transaction as iteration yields it, with its data records.
type TxnRecord struct {
	TxnMeta // Tid and Status are always set
	Records []DataRecord
}

// DataRecord is one object record in a transaction (ZODB's DataRecord).
type DataRecord struct {
	Oid Oid
	Tid Tid // the transaction the record belongs to
	// Data is the pickle; nil means the record deletes the object or undoes
	// its creation.
	Data []byte
	// DataTxn is the tid of the transaction whose data this record reuses
	// (a FileStorage backpointer, ZODB's data_txn / restore's prev_txn), 0 if
	// none.
	DataTxn Tid
}

// RecordIterator is ZODB's IStorageCurrentRecordIteration (record_iternext).
type RecordIterator interface {
	// RecordIterNext returns the current revision of the smallest oid >=
	// from, and the oid after it (ok false when there is none).
	RecordIterNext(ctx context.Context, from Oid) (rec DataRecord, next Oid, more bool, err error)
}

// UndoInfo is one entry of undoLog/undoInfo.
type UndoInfo struct {
	ID          []byte // opaque id passed back to UndoTxn.Undo
	Tid         Tid
	User        []byte
	Description []byte
	Extension   []byte // pickled extension dict
	Size        int    // transaction record length
}

// Undoer is ZODB's IStorageUndoable listing side.
type Undoer interface {
	// UndoLog lists undoable transactions newest first: entries first..last
	// of those that match (last < 0 means -last entries from first), as
	// ZODB's undoLog/undoInfo. match may be nil.
	UndoLog(ctx context.Context, first, last int, match func(UndoInfo) bool) ([]UndoInfo, error)
}

// Packer is ZODB's pack.
type Packer interface {
	// Pack removes revisions not needed to load any state at or after t; gc
	// also removes objects unreachable from the root.
	Pack(ctx context.Context, t time.Time, gc bool) error
}

// Blobber gives access to committed blob files.
type Blobber interface {
	// LoadBlob returns the path of the committed blob file of oid's revision
	// serial. The file belongs to the storage: callers read it and must not
	// change it. *NotFoundError when there is none.
	LoadBlob(ctx context.Context, oid Oid, serial Tid) (string, error)
	// BlobTempDir is a directory on the blob directory's file system where
	// callers stage uploads, so StoreBlob can rename them into place.
	BlobTempDir() string
}

// RestoreTxn copies committed data with its original tid (ZODB restore).
type RestoreTxn interface {
	// Restore writes data (nil: undone creation) for oid without a conflict
	// check; prevTxn, if not 0, is the transaction whose identical data may
	// be referenced instead of copied.
	Restore(ctx context.Context, oid Oid, data []byte, prevTxn Tid) error
}

// BulkRestorer is implemented by storages that take many restored
// transactions per fsync: the target of a copy or a RAID recovery. Both
// resume from the target's last transaction after a crash, so they need
// the target to end at a whole transaction, not every transaction to be
// on disk when its Finish returns. RestoreTransactions uses it.
type BulkRestorer interface {
	// BeginBulk is Begin for a restore transaction whose Vote and Finish
	// do not wait for the disk: when Finish returns, the transaction is
	// visible and watchers have its event, and it is durable once
	// SyncBulk returns. A crash before that leaves a prefix of the
	// transactions finished since the last SyncBulk, each whole or
	// absent.
	BeginBulk(ctx context.Context, meta TxnMeta) (Txn, error)
	// SyncBulk makes every transaction a bulk Txn finished durable.
	SyncBulk(ctx context.Context) error
}

// AsBulkRestorer returns s as a BulkRestorer if it implements it and
// reports the restore capability.
func AsBulkRestorer(s Storage) (BulkRestorer, bool) {
	b, ok := s.(BulkRestorer)
	return b, ok && s.Capabilities().Restore
}

// UndoTxn undoes a transaction inside this one (ZODB undo).
type UndoTxn interface {
	// Undo reverts the transaction named by id (from UndoLog) and returns the
	// oids it touched; *UndoError when it cannot.
	Undo(ctx context.Context, id []byte) ([]Oid, error)
}

// BlobTxn stores objects with blobs.
type BlobTxn interface {
	// StoreBlob is Store with a blob; the storage takes over the file at
	// blobPath (moving it into its blob directory at Finish, removing it on
	// Abort).
	StoreBlob(ctx context.Context, oid Oid, serial Tid, data []byte, blobPath string) error
	// RestoreBlob is Restore with a blob file.
	RestoreBlob(ctx context.Context, oid Oid, data []byte, blobPath string, prevTxn Tid) error
}

// DeleteTxn is ZODB's IExternalGC deleteObject.
type DeleteTxn interface {
	// Delete removes oid if serial is still its current tid (*ConflictError
	// otherwise, here or at Vote); loads then fail with *NotFoundError.
	Delete(ctx context.Context, oid Oid, serial Tid) error
}

// AsIterator returns s as an Iterator if it reports the capability.
func AsIterator(s Storage) (Iterator, bool) {
	it, ok := s.(Iterator)
	return it, ok && s.Capabilities().Iterate
}

// AsRecordIterator returns s as a RecordIterator if it reports the capability.
func AsRecordIterator(s Storage) (RecordIterator, bool) {
	it, ok := s.(RecordIterator)
	return it, ok && s.Capabilities().RecordIter
}

// AsUndoer returns s as an Undoer if it reports the capability.
func AsUndoer(s Storage) (Undoer, bool) {
	u, ok := s.(Undoer)
	return u, ok && s.Capabilities().Undo
}

// AsPacker returns s as a Packer if it reports the capability.
func AsPacker(s Storage) (Packer, bool) {
	p, ok := s.(Packer)
	return p, ok && s.Capabilities().Pack
}

// AsBlobber returns s as a Blobber if it reports the capability.
func AsBlobber(s Storage) (Blobber, bool) {
	b, ok := s.(Blobber)
	return b, ok && s.Capabilities().Blobs
}

// Extender is implemented by storages that offer extra synchronous ZEO
// calls, such as the RAID's management calls (docs/protocol.md §4.20). The
// server lists them in get_info's extensionMethods and dispatches them on
// registered connections, read-only ones included.
type Extender interface {
	Extensions() map[string]Extension
}

// Extension is one extra call. Arguments and the result are values of the
// ZEO wire: nil, bool, int64, float64, string, []byte, []any and
// map[string]any (decoded tuples arrive as []any-like sequences).
type Extension func(ctx context.Context, args []any) (any, error)
