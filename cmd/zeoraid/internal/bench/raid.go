package bench

import (
	"context"
	"fmt"
	"strings"
)

// Storage sections of the RAID figures; "%[1]s" is the server's directory.
const (
	oneFileStorage = "<filestorage 1>\n  path %[1]s/Data.fs\n</filestorage>\n"
	raidOfFiles    = "<raidstorage 1>\n  <filestorage a>\n    path %[1]s/a.fs\n  </filestorage>\n" +
		"  <filestorage b>\n    path %[1]s/b.fs\n  </filestorage>\n</raidstorage>\n"
	raidOfZeoclients = "<raidstorage 1>\n  <zeoclient a>\n    server %[2]s\n    storage 1\n  </zeoclient>\n" +
		"  <zeoclient b>\n    server %[3]s\n    storage 1\n  </zeoclient>\n</raidstorage>\n"
)

// raid compares a RAID of two filestorages with one filestorage, and a
// RAID of two zeoclients (each in front of a runzeo) with one runzeo
// used directly: loads and commits through zeoproto clients.
func (r *reporter) raid(ctx context.Context) error {
	phases := []string{PhaseLoad, PhaseSmall, PhaseLarge}
	measure := func(s *Server, err error) (Result, error) {
		if err != nil {
			return Result{}, err
		}
		defer s.Stop()
		r.progress("  %s", s.Name)
		return run(ctx, Options{Addr: s.Addr, Conns: r.o.Conns, Objects: r.o.Objects, ObjectSize: r.o.ObjectSize,
			Duration: r.o.Duration, Pid: s.Pid(), Progress: r.o.Progress}, phases)
	}
	one, err := measure(r.server(ctx, "zeoraid", "one-filestorage", oneFileStorage))
	if err != nil {
		return fmt.Errorf("one filestorage: %w", err)
	}
	mirror, err := measure(r.server(ctx, "zeoraid", "raid-of-filestorages", raidOfFiles))
	if err != nil {
		return fmt.Errorf("RAID of two filestorages: %w", err)
	}
	r.addRaidRows("RAID of two filestorages vs one filestorage (zeoraid both)", "one fs", mirror, one, 0.9)

	direct, err := measure(r.server(ctx, "runzeo", "runzeo-direct", oneFileStorage))
	if err != nil {
		return fmt.Errorf("one runzeo: %w", err)
	}
	var backs [2]*Server
	for i := range backs {
		s, err := r.server(ctx, "runzeo", fmt.Sprintf("runzeo-child-%d", i), oneFileStorage)
		if err != nil {
			for _, b := range backs[:i] {
				b.Stop()
			}
			return err
		}
		backs[i] = s
	}
	defer func() {
		for _, b := range backs {
			b.Stop()
		}
	}()
	zeo, err := measure(r.server(ctx, "zeoraid", "raid-of-zeoclients", raidOfZeoclients, backs[0].Addr, backs[1].Addr))
	if err != nil {
		return fmt.Errorf("RAID of two zeoclients: %w", err)
	}
	r.addRaidRows("RAID of two zeoclient -> runzeo vs one runzeo directly", "runzeo", zeo, direct, 0)
	return nil
}

func (r *reporter) addRaidRows(sec, ref string, got, want Result, loadGoal float64) {
	for _, c := range []struct {
		phase, figure string
		objects       float64
		goal          float64
	}{
		{PhaseSmall, "commits, 1 object (objects/s)", 1, 0.8},
		{PhaseLarge, "commits, 100 objects (objects/s)", 100, 0.8},
		{PhaseLoad, "loads/s", 1, loadGoal},
	} {
		g, w := got.Phase(c.phase), want.Phase(c.phase)
		r.add(Row{Section: sec, Figure: fmt.Sprintf("%s, %d connections", c.figure, r.o.Conns), Unit: "obj/s",
			Value: g.PerSecond() * c.objects, RefName: ref, Ref: w.PerSecond() * c.objects, Goal: c.goal,
			Comment: fmt.Sprintf("p50 %v vs %v", g.P50, w.P50)})
	}
}

// server starts zeoraid or runzeo (which) with a storage section
// formatted with the server's directory and args.
func (r *reporter) server(ctx context.Context, which, name, section string, args ...any) (*Server, error) {
	dir, err := r.dir(name)
	if err != nil {
		return nil, err
	}
	storage := section
	if strings.Contains(section, "%[") {
		storage = fmt.Sprintf(section, append([]any{dir}, args...)...)
	}
	var s *Server
	if which == "runzeo" {
		s, err = StartRunzeo(ctx, r.o.Python, storage, dir)
	} else {
		s, err = StartZeoraid(ctx, r.o.Serve, storage, dir)
	}
	if err != nil {
		return nil, err
	}
	s.Name, s.dir = name, dir
	return s, nil
}
