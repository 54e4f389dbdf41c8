// Package raidstorage is the <raidstorage> section: a RAID-1 mirror whose
// children are any storages (docs/raid.md). Every committed transaction
// goes to every optimal child with the same tid, reads go to one optimal
// child with failover, a degraded child is brought back by copying the
// missing transactions through the restore path, and the management calls
// (raid_status, raid_details, raid_disable, raid_recover, raid_verify,
// raid_info) are offered as ZEO extension calls.
//
// The RAID never opens or closes its children: Build opens them first and
// closes them after the RAID, so a child is just a stack.Storage (a
// mappingstorage, a filestorage, a remote ZEO server, another RAID).
package raidstorage

import (
	"context"
	"fmt"
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// Read distributions (the read-distribution key).
const (
	ReadRandom  = "random"  // a uniformly random optimal child
	ReadFirst   = "first"   // the first optimal child in configuration order
	ReadLatency = "latency" // the optimal child with the lowest moving-average latency
)

// Fail modes (the fail-mode key): what the RAID does below write-quorum.
const (
	FailReadOnly = "read-only" // commits fail with ReadOnlyError, reads go on
	FailClose    = "close"     // every call fails
)

// Options are the keys of a <raidstorage> section.
type Options struct {
	ReadDistribution string        `zconfig:"read-distribution,default=random" doc:"which optimal child serves a read: random, first (configuration order) or latency (lowest moving-average latency)"`
	WriteQuorum      int           `zconfig:"write-quorum,default=1" doc:"commits need at least this many optimal children; below it the fail-mode applies until a recovery restores the count"`
	FailMode         string        `zconfig:"fail-mode,default=read-only" doc:"below write-quorum: read-only (commits raise ReadOnlyError, reads go on) or close (every call fails)"`
	CallTimeout      time.Duration `zconfig:"call-timeout,default=60s" doc:"bound of one call to a child; a child that takes longer is degraded"`
	RecoveryRate     float64       `zconfig:"recovery-rate,default=2.0" doc:"a recovery must copy at least this many times faster than clients commit; commits are delayed when it falls behind, so recovery always finishes"`
	AutoRecover      bool          `zconfig:"auto-recover" doc:"start the recovery of a degraded child by itself (not of one disabled by the controller)"`
	ScrubInterval    time.Duration `zconfig:"scrub-interval,default=0" doc:"compare the optimal children's histories in the background this often, from the last verified transaction on, and degrade a child that differs (0: off)"`
	ScrubRate        float64       `zconfig:"scrub-rate,default=500" doc:"transactions per second a scrub compares per child, at most: it reads in the background without taking the children from clients"`
	StateDir         string        `zconfig:"state-dir" doc:"directory (created if missing) where the RAID keeps its recovery checkpoints, so that after a restart the recovery of a child that is behind compares histories from where it is known to agree, not from the first transaction; unset: kept in memory only"`
}

// Validate checks option values the decoder cannot: enumerations, ranges
// and the quorum against the number of children (stack.OptionsValidator).
func (o *Options) Validate(children int) error {
	switch o.ReadDistribution {
	case ReadRandom, ReadFirst, ReadLatency:
	default:
		return fmt.Errorf("read-distribution %q: want random, first or latency", o.ReadDistribution)
	}
	switch o.FailMode {
	case FailReadOnly, FailClose:
	default:
		return fmt.Errorf("fail-mode %q: want read-only or close", o.FailMode)
	}
	if o.WriteQuorum < 1 || o.WriteQuorum > children {
		return fmt.Errorf("write-quorum %d: want 1 to %d (the number of children)", o.WriteQuorum, children)
	}
	if o.CallTimeout <= 0 {
		return fmt.Errorf("call-timeout %s: want a positive interval", o.CallTimeout)
	}
	if o.RecoveryRate <= 0 {
		return fmt.Errorf("recovery-rate %g: want a positive number", o.RecoveryRate)
	}
	if o.ScrubInterval < 0 {
		return fmt.Errorf("scrub-interval %s: want 0 (off) or a positive interval", o.ScrubInterval)
	}
	if o.ScrubRate <= 0 {
		return fmt.Errorf("scrub-rate %g: want a positive number", o.ScrubRate)
	}
	return nil
}

// DefaultOptions returns the options of a section that sets no key.
func DefaultOptions() Options {
	return Options{
		ReadDistribution: ReadRandom,
		WriteQuorum:      1,
		FailMode:         FailReadOnly,
		CallTimeout:      60 * time.Second,
		RecoveryRate:     2,
		ScrubRate:        500,
	}
}

func init() {
	stack.Register(stack.Module{
		Type: "raidstorage",
		Doc: "A RAID-1 mirror of its child storage sections (any type, each with a unique name): every commit goes to every " +
			"optimal child with the same tid, reads go to one child with failover, a failed child is degraded and can be " +
			"recovered while clients go on. Managed with `zeoraid ctl` (raid_status, raid_details, raid_disable, " +
			"raid_recover, raid_verify, raid_info). %import gocept.zeoraid is accepted for compatibility.",
		Options:       &Options{},
		Children:      true,
		NamedChildren: true,
		Open: func(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
			o, ok := opts.(*Options)
			if !ok {
				return nil, fmt.Errorf("raidstorage: options of type %T, want *Options", opts)
			}
			return Open(ctx, Config{Path: n.Path, Names: n.ChildNames, Children: n.Children, Options: *o, Log: n.Log})
		},
	})
}
