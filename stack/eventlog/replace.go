package eventlog

// Replace makes l log as n does — level, handlers, output and formats —
// and takes over n's files and sockets, closing l's own: a reloaded
// <eventlog> applied to the logger every part of the server already
// holds. n must not be used afterwards.
func (l *Logger) Replace(n *Logger) {
	l.SetLevel(n.GetLevel())
	l.ReplaceHooks(n.Hooks)
	l.SetFormatter(n.Formatter)
	l.SetOutput(n.Out)
	files, syslogs := l.files, l.syslogs
	l.files, l.syslogs = n.files, n.syslogs
	n.files, n.syslogs = nil, nil
	for _, f := range files {
		f.close()
	}
	for _, w := range syslogs {
		w.close()
	}
}
