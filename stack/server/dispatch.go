package server

import (
	"fmt"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// syncHandler answers a synchronous call. It replies itself (possibly
// later, from another goroutine); a returned error becomes the error reply.
type syncHandler func(c *conn, id any, a zeoproto.Args) error

// asyncHandler runs an asynchronous call; a returned error closes the
// connection, the only way to report it (docs/protocol.md §3.3).
type asyncHandler func(c *conn, a zeoproto.Args) error

// methods are the names a registered connection may call (docs/protocol.md §4.1
// plus the extension names of §4.20). Any other name closes the
// connection, as Python does.
var (
	syncMethods  map[string]syncHandler
	asyncMethods map[string]asyncHandler
)

func init() {
	syncMethods = map[string]syncHandler{
		"get_info":              (*conn).getInfo,
		"lastTransaction":       (*conn).lastTransaction,
		"getInvalidations":      (*conn).getInvalidations,
		"new_oids":              (*conn).newOIDs,
		"new_oid":               (*conn).newOID,
		"pack":                  (*conn).pack,
		"loadBefore":            (*conn).loadBefore,
		"loadSerial":            (*conn).loadSerial,
		"getTid":                (*conn).getTid,
		"history":               (*conn).history,
		"record_iternext":       (*conn).recordIternext,
		"sendBlob":              (*conn).sendBlob,
		"vote":                  (*conn).vote,
		"tpc_finish":            (*conn).tpcFinish,
		"tpc_abort":             (*conn).tpcAbort,
		"undoLog":               (*conn).undoLog,
		"undoInfo":              (*conn).undoInfo,
		"iterator_start":        (*conn).iteratorStart,
		"iterator_next":         (*conn).iteratorNext,
		"iterator_record_start": (*conn).iteratorRecordStart,
		"iterator_record_next":  (*conn).iteratorRecordNext,
		"server_status":         (*conn).serverStatus,
		"ping":                  (*conn).ping,
		"getExtensionMethods":   (*conn).getExtensionMethods,
	}
	asyncMethods = map[string]asyncHandler{
		"tpc_begin":                       (*conn).tpcBegin,
		"storea":                          (*conn).storea,
		"checkCurrentSerialInTransaction": (*conn).checkCurrentSerial,
		"restorea":                        (*conn).restorea,
		"deleteObject":                    (*conn).deleteObject,
		"storeBlobStart":                  (*conn).storeBlobStart,
		"storeBlobChunk":                  (*conn).storeBlobChunk,
		"storeBlobEnd":                    (*conn).storeBlobEnd,
		"storeBlobShared":                 (*conn).storeBlobShared,
		"undoa":                           (*conn).undoa,
		"iterator_gc":                     (*conn).iteratorGC,
		"set_client_label":                (*conn).setClientLabel,
	}
}

// dispatch handles one message. An error means the connection must close.
func (c *conn) dispatch(m zeoproto.Message) error {
	if m.IsReply() {
		return fmt.Errorf("client sent a reply (msgid %v)", m.ID)
	}
	args, err := m.CallArgs()
	if err != nil {
		return err
	}
	if c.ms == nil {
		if m.Name != "register" {
			return fmt.Errorf("%s called before register", m.Name)
		}
		if m.IsAsync() {
			return fmt.Errorf("register must be a synchronous call")
		}
		c.hold()
		if err := c.register(m.ID, args); err != nil {
			c.replyErr(m.ID, err)
		}
		return nil
	}
	// The call's storage stays open until the call returns, even if a
	// reload swaps the mount's root meanwhile; calls that answer later
	// (pack, undoLog, extension calls) take a lease of their own.
	return c.ms.mount.Use(func(stack.Storage) error { return c.call(m, args) })
}

// call handles a call of a registered connection.
func (c *conn) call(m zeoproto.Message, args zeoproto.Args) error {
	start := time.Now()
	if m.IsAsync() {
		h, ok := asyncMethods[m.Name]
		if !ok {
			return fmt.Errorf("unknown asynchronous method %q", m.Name)
		}
		c.flush(true)
		defer c.ms.observe(m.Name, start)
		return h(c, args)
	}
	h, ok := syncMethods[m.Name]
	if !ok {
		if ah, isAsync := asyncMethods[m.Name]; isAsync {
			c.hold()
			// Python servers dispatch by name alone: a method clients
			// send without waiting may also be called and answered
			// (ZEO's IterationTests call iterator_gc so). The reply is
			// None or the error.
			if err := ah(c, args); err != nil {
				c.replyErr(m.ID, err)
			} else {
				c.reply(m.ID, nil)
			}
			c.ms.observe(m.Name, start)
			return nil
		}
		ext := c.extension(m.Name)
		if ext == nil {
			return fmt.Errorf("unknown method %q", m.Name)
		}
		h = ext
	}
	later := !ok || deferredReply[m.Name]
	if later {
		c.flush(true)
		c.pend(m.ID, m.Name, start)
	} else {
		// Answered before h returns: the reader writes the reply itself
		// (conn.hold).
		c.hold()
	}
	if err := h(c, m.ID, args); err != nil {
		c.replyErr(m.ID, err)
	}
	if !later {
		c.ms.observe(m.Name, start)
	}
	return nil
}

// extension returns a handler for an extension call the mounted storage
// offers (stack.Extender), or nil.
func (c *conn) extension(name string) syncHandler {
	f, ok := c.srv.opts.Extensions[name]
	if !ok {
		ext, isExt := c.storage().(stack.Extender)
		if !isExt {
			return nil
		}
		if f, ok = ext.Extensions()[name]; !ok {
			return nil
		}
	}
	return func(c *conn, id any, a zeoproto.Args) error {
		if err := c.checkTrust(name); err != nil {
			return err
		}
		// Management calls may take long (a recovery, a verify): they run on
		// their own goroutine and reply when done, holding a lease on the
		// mount's root until then.
		_, release := c.ms.mount.Lease()
		c.srv.spawn(func() {
			defer release()
			r, err := f(c.ctx, []any(a))
			if err != nil {
				c.replyErr(id, err)
				return
			}
			c.reply(id, r)
		})
		return nil
	}
}
