package rsync

import (
	"errors"
	"os/exec"
	"strings"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

// Exit codes of rsync that the package interprets.
const (
	exitPartial  = 23 // some files could not be transferred
	exitVanished = 24 // source files vanished while being read
	exitFileIO   = 11
)

// classify turns a process error into a *protocol.Error, or nil when the exit is
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
	return &protocol.Error{
		ExitCode: code,
		DiskFull: strings.Contains(output, "No space left on device") || strings.Contains(output, "Disk quota exceeded"),
		Output:   output,
		Err:      err,
	}
}
