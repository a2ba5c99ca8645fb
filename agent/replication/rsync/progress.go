package rsync

import (
	"bufio"
	"bytes"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Progress is one `--info=progress2` update of a running transfer.
type Progress struct {
	// Bytes is the size of the file data processed so far (rsync counts
	// matched and literal data alike).
	Bytes int64
	// Percent of the total file size.
	Percent int
	// Rate as rsync prints it (e.g. "12.34MB/s").
	Rate string
	// Transferred files so far (xfr#) and files still to check.
	Transferred int64
	ToCheck     int64
	TotalFiles  int64
}

// Stats is the `--info=stats2` summary of a finished transfer.
type Stats struct {
	Files            int64
	CreatedFiles     int64
	DeletedFiles     int64
	TransferredFiles int64
	TotalFileSize    int64
	TransferredSize  int64
	LiteralData      int64
	MatchedData      int64
	BytesSent        int64
	BytesReceived    int64
}

var progressRE = regexp.MustCompile(`^\s*(\d+)\s+(\d+)%\s+(\S+)\s+\S+(?:\s+\(xfr#(\d+),\s+(?:to|ir)-chk=(\d+)/(\d+)\))?`)

// ParseProgress parses one progress2 line.
func ParseProgress(line string) (Progress, bool) {
	m := progressRE.FindStringSubmatch(line)
	if m == nil {
		return Progress{}, false
	}
	p := Progress{Bytes: atoi(m[1]), Percent: int(atoi(m[2])), Rate: m[3]}
	if m[4] != "" {
		p.Transferred, p.ToCheck, p.TotalFiles = atoi(m[4]), atoi(m[5]), atoi(m[6])
	}
	return p, true
}

var statFields = map[string]func(*Stats, int64){
	"Number of files":                     func(s *Stats, v int64) { s.Files = v },
	"Number of created files":             func(s *Stats, v int64) { s.CreatedFiles = v },
	"Number of deleted files":             func(s *Stats, v int64) { s.DeletedFiles = v },
	"Number of regular files transferred": func(s *Stats, v int64) { s.TransferredFiles = v },
	"Total file size":                     func(s *Stats, v int64) { s.TotalFileSize = v },
	"Total transferred file size":         func(s *Stats, v int64) { s.TransferredSize = v },
	"Literal data":                        func(s *Stats, v int64) { s.LiteralData = v },
	"Matched data":                        func(s *Stats, v int64) { s.MatchedData = v },
	"Total bytes sent":                    func(s *Stats, v int64) { s.BytesSent = v },
	"Total bytes received":                func(s *Stats, v int64) { s.BytesReceived = v },
}

// parseStatLine folds one stats2 line into s; it reports whether the line
// was a statistics line.
func parseStatLine(s *Stats, line string) bool {
	k, v, ok := strings.Cut(line, ":")
	if !ok {
		return false
	}
	set, ok := statFields[strings.TrimSpace(k)]
	if !ok {
		return false
	}
	fields := strings.Fields(strings.ReplaceAll(v, ",", ""))
	if len(fields) == 0 {
		return false
	}
	set(s, atoi(fields[0]))
	return true
}

// scanOutput reads rsync's standard output, splitting on both carriage
// returns (progress2 rewrites its line) and newlines. Progress lines go to
// onProgress, itemize lines (prefixed with itemPrefix) to onItem, stats are
// accumulated and returned.
func scanOutput(r io.Reader, onProgress func(Progress), onItem func(string)) (Stats, []string) {
	var st Stats
	var other []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sc.Split(splitCRLF)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, itemPrefix); ok {
			if onItem != nil {
				onItem(rest)
			}
			continue
		}
		if parseStatLine(&st, line) {
			continue
		}
		if p, ok := ParseProgress(line); ok {
			if onProgress != nil {
				onProgress(p)
			}
			continue
		}
		if strings.TrimSpace(line) != "" {
			other = append(other, line)
			if len(other) > 64 {
				other = other[1:]
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
	return st, other
}

func splitCRLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}
