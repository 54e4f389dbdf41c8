package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

const checkUsage = `usage: zeoraid check [-H host] [-p port] [-a host:port|/unix/socket] [-S storage] [-t timeout] [A B]
Checks the consistency of a RAID's children on a running zeoraid server: asks
the server (raid_verify) to compare the histories of children A and B
transaction by transaction (tid, status, user, description, extension and a
hash of every data record) up to the RAID's last transaction, and reports the
first difference. Without names, every optimal child is compared with the
first optimal one. It only reads, so it is safe while clients commit.
exit status: 0 identical, 2 a difference (or fewer than two optimal children), 3 error`

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, checkUsage) }
	var target ctlTarget
	target.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUnknown
	}
	names := fs.Args()
	if len(names) != 0 && len(names) != 2 {
		fs.Usage()
		return exitUnknown
	}
	rc, err := target.dial()
	if err != nil {
		fmt.Fprintf(stderr, "zeoraid check: %v\n", err)
		return exitUnknown
	}
	defer rc.Close()
	pairs := [][2]string{}
	if len(names) == 2 {
		pairs = append(pairs, [2]string{names[0], names[1]})
	} else {
		d, err := rc.call("raid_details")
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid check: %v\n", err)
			return exitUnknown
		}
		details, _ := toPlain(d).(map[string]any)
		var optimal, others []string
		for name, state := range details {
			if state == "optimal" {
				optimal = append(optimal, name)
			} else {
				others = append(others, fmt.Sprintf("%s (%v)", name, state))
			}
		}
		sort.Strings(optimal)
		sort.Strings(others)
		if len(others) > 0 {
			fmt.Fprintf(stdout, "not checked: %s\n", strings.Join(others, ", "))
		}
		if len(optimal) < 2 {
			fmt.Fprintf(stdout, "fewer than two optimal children: nothing to compare\n")
			return exitCritical
		}
		for _, n := range optimal[1:] {
			pairs = append(pairs, [2]string{optimal[0], n})
		}
	}
	code := exitOK
	for _, p := range pairs {
		r, err := rc.call("raid_verify", p[0], p[1])
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid check %s %s: %v\n", p[0], p[1], err)
			return exitUnknown
		}
		m, _ := toPlain(r).(map[string]any)
		fmt.Fprintln(stdout, m["message"])
		if m["identical"] != true {
			code = exitCritical
		}
	}
	return code
}
