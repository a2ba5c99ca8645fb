package rsync

import (
	"bufio"
	"bytes"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/livemigrate/livemigrate/agent/replication/protocol"
)

var progressRE = regexp.MustCompile(`^\s*(\d+)\s+(\d+)%\s+(\S+)\s+\S+(?:\s+\(xfr#(\d+),\s+(?:to|ir)-chk=(\d+)/(\d+)\))?`)

// ParseProgress parses one progress2 line.
func ParseProgress(line string) (protocol.Progress, bool) {
	m := progressRE.FindStringSubmatch(line)
	if m == nil {
		return protocol.Progress{}, false
	}
	p := protocol.Progress{Bytes: atoi(m[1]), Percent: int(atoi(m[2])), Rate: m[3]}
	if m[4] != "" {
		p.Transferred, p.ToCheck, p.TotalFiles = atoi(m[4]), atoi(m[5]), atoi(m[6])
	}
	return p, true
}

var statFields = map[string]func(*protocol.Stats, int64){
	"Number of files":                     func(s *protocol.Stats, v int64) { s.Files = v },
	"Number of created files":             func(s *protocol.Stats, v int64) { s.CreatedFiles = v },
	"Number of deleted files":             func(s *protocol.Stats, v int64) { s.DeletedFiles = v },
	"Number of regular files transferred": func(s *protocol.Stats, v int64) { s.TransferredFiles = v },
	"Total file size":                     func(s *protocol.Stats, v int64) { s.TotalFileSize = v },
	"Total transferred file size":         func(s *protocol.Stats, v int64) { s.TransferredSize = v },
	"Literal data":                        func(s *protocol.Stats, v int64) { s.LiteralData = v },
	"Matched data":                        func(s *protocol.Stats, v int64) { s.MatchedData = v },
	"Total bytes sent":                    func(s *protocol.Stats, v int64) { s.BytesSent = v },
	"Total bytes received":                func(s *protocol.Stats, v int64) { s.BytesReceived = v },
}

// parseStatLine folds one stats2 line into s; it reports whether the line
// was a statistics line.
func parseStatLine(s *protocol.Stats, line string) bool {
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
func scanOutput(r io.Reader, onProgress func(protocol.Progress), onItem func(string)) (protocol.Stats, []string) {
	var st protocol.Stats
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
