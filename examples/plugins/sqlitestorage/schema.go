package sqlitestorage

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// formatVersion is the schema version in meta; a file of another version
// is refused.
const formatVersion = 1

// schema creates the tables of a new file. Oids and tids are 8-byte
// big-endian BLOBs (ZODB's p64), ordered as the numbers are.
//
//   - object_state: one row per revision; data NULL is a deletion or an
//     undone creation; data_txn names the transaction whose data the row
//     repeats (undo, restore), NULL if none. The data is always stored in
//     full, so no row depends on another.
//   - transactions: one row per transaction; size is the bytes of its data.
//   - meta: format, next_oid (past every oid handed out), last_tid (which
//     pack may leave without a transactions row), objects (live objects).
const schema = `
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value ANY NOT NULL
);
CREATE TABLE transactions (
	tid         BLOB PRIMARY KEY,
	status      TEXT NOT NULL,
	user        BLOB NOT NULL,
	description BLOB NOT NULL,
	extension   BLOB NOT NULL,
	size        INTEGER NOT NULL
);
CREATE TABLE object_state (
	oid      BLOB NOT NULL,
	tid      BLOB NOT NULL,
	data     BLOB,
	data_txn BLOB,
	PRIMARY KEY (oid, tid)
);
CREATE INDEX object_state_by_tid ON object_state (tid, oid);
`

// p64 is ZODB's 8-byte big-endian form of an oid or tid, as stored.
func p64[T ~uint64](v T) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(v)) }

// u64 reads a stored oid or tid; NULL reads as 0.
func u64[T ~uint64](b []byte) (T, error) {
	if b == nil {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt database: an oid or tid of %d bytes", len(b))
	}
	return T(binary.BigEndian.Uint64(b)), nil
}

// nullable stores a zero tid as NULL.
func nullable(t stack.Tid) any {
	if t == 0 {
		return nil
	}
	return p64(t)
}

// dsn is the driver's name for the file at path: a URI (the path escaped)
// with the pragmas every connection runs.
func dsn(path string, params ...string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + strings.Join(params, "&")
}

// openDB opens a connection pool on the file.
func openDB(path string, conns int, params ...string) (*sql.DB, error) {
	params = append([]string{"_pragma=busy_timeout(10000)"}, params...)
	db, err := sql.Open("sqlite", dsn(path, params...))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	return db, nil
}

// initSchema creates the schema in an empty file, or checks the format of
// an existing one.
func initSchema(ctx context.Context, db *sql.DB, readOnly bool) error {
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table'`).Scan(&tables); err != nil {
		return err
	}
	if tables == 0 {
		if readOnly {
			return errors.New("read-only needs an existing sqlitestorage database; the file is empty")
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('format', ?), ('next_oid', ?), ('last_tid', ?), ('objects', 0)`,
			formatVersion, p64(stack.Oid(1)), p64(stack.Tid(0))); err != nil {
			return err
		}
		return tx.Commit()
	}
	var format int64
	err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'format'`).Scan(&format)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) || strings.Contains(err.Error(), "no such table") {
			return errors.New("not a sqlitestorage database (no format in a meta table)")
		}
		return err
	}
	if format != formatVersion {
		return fmt.Errorf("database format %d, this zeoraid-plugin-sqlite reads %d", format, formatVersion)
	}
	return nil
}

// metaState is what Open reads to go on where the last writer stopped.
type metaState struct {
	last    stack.Tid
	nextOid stack.Oid
	objects int64
}

// readMeta reads the last tid, the next oid and the object count, taking
// the stored rows into account so a lost meta update cannot make a tid or
// an oid be handed out twice.
func readMeta(ctx context.Context, db *sql.DB) (metaState, error) {
	var m metaState
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return m, err
	}
	defer tx.Rollback()
	var next, last, maxTid, maxOid []byte
	err = tx.QueryRowContext(ctx, `SELECT
		(SELECT value FROM meta WHERE name = 'next_oid'),
		(SELECT value FROM meta WHERE name = 'last_tid'),
		(SELECT value FROM meta WHERE name = 'objects'),
		(SELECT max(tid) FROM transactions),
		(SELECT max(oid) FROM object_state)`).Scan(&next, &last, &m.objects, &maxTid, &maxOid)
	if err != nil {
		return m, err
	}
	var vals [4]uint64
	for i, b := range [][]byte{next, last, maxTid, maxOid} {
		if vals[i], err = u64[uint64](b); err != nil {
			return m, err
		}
	}
	m.nextOid = stack.Oid(max(vals[0], 1))
	if maxOid != nil {
		m.nextOid = max(m.nextOid, stack.Oid(vals[3])+1)
	}
	m.last = stack.Tid(max(vals[1], vals[2]))
	return m, tx.Commit()
}
