package eventlog

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A line logged under a ZEO logger name shows that name as %(name)s and
// not among the fields; Python's CRITICAL is logrus's fatal level, logged
// through Log (which, unlike Fatal, does not exit).
func TestLoggerNameAndCritical(t *testing.T) {
	f := &Formatter{Layout: DefaultFormat}
	l := logrus.New()
	e := logrus.NewEntry(l).WithFields(logrus.Fields{LoggerField: "ZEO.StorageServer", "storage": "1"})
	e.Time = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	e.Level = logrus.FatalLevel
	e.Message = "(127.0.0.1:5000) Transaction timeout after 1 seconds"
	b, err := f.Format(e)
	if err != nil {
		t.Fatal(err)
	}
	want := "------\n2024-05-01T12:00:00 CRITICAL ZEO.StorageServer (127.0.0.1:5000) Transaction timeout after 1 seconds storage=1\n"
	if string(b) != want {
		t.Fatalf("formatted\n%q\nwant\n%q", b, want)
	}
}
