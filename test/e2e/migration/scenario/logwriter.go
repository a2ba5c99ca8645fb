package scenario

import "strings"

// LogWriter sends what is written to it (a command's output) to a test log,
// one complete line per call of Log; a last line without a newline stays
// buffered.
type LogWriter struct {
	// Log is the test's Log method, e.g. t.Log.
	Log func(args ...any)
	buf []byte
}

func (w *LogWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
