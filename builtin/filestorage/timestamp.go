package filestorage

import (
	"time"

	"github.com/zeoraid/zeoraid/stack"
)

// laterThan is persistent's TimeStamp.laterThan (the C version): t if it
// is after last, else last plus one unit, carrying into the next minute by
// calendar rules when the seconds part overflows (docs/filestorage.md §8).
func laterThan(t, last stack.Tid) stack.Tid {
	if t > last {
		return t
	}
	if uint32(last) != 0xffffffff {
		return last + 1
	}
	m := uint64(last) >> 32
	minute, hour := m%60, m/60%24
	day, month, year := m/1440%31+1, m/44640%12+1, m/535680+1900
	minute++
	if minute == 60 {
		minute, hour = 0, hour+1
		if hour == 24 {
			hour, day = 0, day+1
			if day > daysIn(year, month) {
				day, month = 1, month+1
				if month > 12 {
					month, year = 1, year+1
				}
			}
		}
	}
	hi := ((((year-1900)*12+month-1)*31+day-1)*24+hour)*60 + minute
	return stack.Tid(hi << 32)
}

func daysIn(year, month uint64) uint64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// newTid is the tid Python's tpc_begin makes at now after last.
func newTid(now time.Time, last stack.Tid) stack.Tid {
	return laterThan(stack.TidFromTime(now), last)
}
