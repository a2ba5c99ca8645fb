package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a failed transfer: an rsync run (package rsync) or a tar stream
// the receiver could not write.
type Error struct {
	// ExitCode of the rsync process, -1 when it did not exit normally or
	// no rsync ran.
	ExitCode int
	// DiskFull is set when the target ran out of space.
	DiskFull bool
	// Output is the tail of the diagnostics.
	Output string
	// Op names what failed ("rsync failed" when empty).
	Op string
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	msg := "rsync failed"
	if e.Op != "" {
		msg = e.Op
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

func (e *Error) Unwrap() error { return e.Err }

// IsDiskFull reports whether err is a failed transfer caused by a full
// target.
func IsDiskFull(err error) bool {
	var re *Error
	return errors.As(err, &re) && re.DiskFull
}
