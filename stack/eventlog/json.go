package eventlog

import (
	"encoding/json"
	"fmt"

	"github.com/sirupsen/logrus"
	"github.com/zeoraid/zeoraid/zconfig"
)

// JSONFormatter renders an entry as python-json-logger does: one object
// whose keys are the log record fields the format names (with their
// values, unformatted), followed by the entry's own fields as keys of
// their own; the message carries no key=value suffix.
type JSONFormatter struct {
	Formatter
}

// Format implements logrus.Formatter.
func (f *JSONFormatter) Format(e *logrus.Entry) ([]byte, error) {
	line, err := f.line(e)
	if err != nil {
		return nil, err
	}
	return append([]byte(line), '\n'), nil
}

// line renders e without the final newline.
func (f *JSONFormatter) line(e *logrus.Entry) (string, error) {
	layout, err := f.layout()
	if err != nil {
		return "", err
	}
	value := f.record(e, false)
	out := map[string]any{}
	for _, p := range layout.Parts {
		if p.Field == "" {
			continue
		}
		if v, ok := value(p.Field); ok {
			out[p.Field] = jsonValue(v)
		}
	}
	for k, v := range e.Data {
		if k == LoggerField {
			continue
		}
		if _, taken := out[k]; taken {
			k = "field." + k
		}
		switch x := v.(type) {
		case error:
			out[k] = x.Error()
		case fmt.Stringer:
			out[k] = x.String()
		default:
			if _, err := json.Marshal(x); err != nil {
				out[k] = fmt.Sprint(x)
			} else {
				out[k] = x
			}
		}
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// jsonValue is a log record value as JSON shows it.
func jsonValue(v zconfig.LogValue) any {
	if p, ok := v.(zconfig.PyObject); ok {
		if p.Repr == "None" {
			return nil
		}
		return p.Repr
	}
	return v
}
