package rsync

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Exit codes of rsync that the package interprets.
const (
	exitPartial  = 23 // some files could not be transferred
	exitVanished = 24 // source files vanished while being read
	exitFileIO   = 11
)

// Error is a failed rsync run.
type Error struct {
	// ExitCode of the rsync process, -1 when it did not exit normally.
	ExitCode int
	// DiskFull is set when the target ran out of space.
	DiskFull bool
	// Output is the tail of rsync's diagnostics.
	Output string
	// op names what failed ("rsync failed" when empty).
	op  string
	err error
}

func (e *Error) Error() string {
	msg := "rsync failed"
	if e.op != "" {
		msg = e.op
	}
	if e.DiskFull {
		msg = "target volume is full (No space left on device)"
	}
	out := strings.TrimSpace(e.Output)
	if len(out) > 2048 {
		out = "…" + out[len(out)-2048:]
	}
	return fmt.Sprintf("%s: exit code %d: %s", msg, e.ExitCode, out)
}

func (e *Error) Unwrap() error { return e.err }

// IsDiskFull reports whether err is an rsync failure caused by a full target.
func IsDiskFull(err error) bool {
	var re *Error
	return errors.As(err, &re) && re.DiskFull
}

// IsRsyncError reports whether err is an rsync failure.
func IsRsyncError(err error) bool {
	var re *Error
	return errors.As(err, &re)
}

// classify turns a process error into an *Error, or nil when the exit is
// acceptable (vanished files while allowVanished).
func classify(err error, output string, allowVanished bool) error {
	if err == nil {
		return nil
	}
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	if code == exitVanished && allowVanished {
		return nil
	}
	return &Error{
		ExitCode: code,
		DiskFull: strings.Contains(output, "No space left on device") || strings.Contains(output, "Disk quota exceeded"),
		Output:   output,
		err:      err,
	}
}
