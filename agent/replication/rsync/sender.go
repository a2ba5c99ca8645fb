package rsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/livemigrate/livemigrate/agent/replication/internal/fswalk"
	"github.com/livemigrate/livemigrate/agent/replication/protocol"
	"github.com/livemigrate/livemigrate/agent/replication/transport"
)

// tunnelRsh is the remote shell of the rsync client. Its standard input and
// output are rsync's end of the protocol stream; file descriptor 3 is one end
// of a socketpair whose other end the agent holds. It duplicates its standard
// input and output to fds 4 and 5 (which, unlike 0 and 1, no redirection of
// the script touches), writes its process id to fd 3 and reads the agent's
// answer:
//
//   - "direct": the agent has taken copies of fds 4 and 5 with
//     pidfd_getfd(2) and bridges them to the TLS connection itself, so the
//     bytes cross no other process; the shell only waits until the agent
//     closes fd 3 (the remote side is done) and exits, which is what the
//     rsync client waits for, as it waits for ssh.
//   - "relay" (pidfd_getfd unavailable, e.g. forbidden by a seccomp
//     profile): it pumps fds 4 and 5 through fd 3 with two cats and the
//     agent bridges fd 3 to the TLS connection. It exits when the remote side
//     closes (the foreground cat reaches EOF on fd 3).
//
// The shell's read builtin consumes fd 3 one byte at a time, so it never
// takes tunnel bytes that follow the answer. The arguments rsync appends
// (host and remote command) are ignored: the receiver decides what runs on
// its side.
const tunnelRsh = "sh -c 'exec 4<&0 5>&1; echo $$ >&3; read -r m <&3; if [ \"$m\" = relay ]; then " +
	"cat <&4 >&3 5>&- 2>/dev/null & exec 4<&- 5>&-; cat <&3; kill $! 2>/dev/null; " +
	"else read -r m <&3; fi; exit 0'"

// remoteDest is the rsync destination spec; the host part is never resolved.
const remoteDest = "livemigrate::" + ModuleName + "/"

// itemPrefix marks itemize lines in the client output.
const itemPrefix = "LMITEM:"

// testHooks let tests play a malicious or constrained sender.
type testHooks struct {
	// remote overrides the rsync remote spec (a malicious sender).
	remote string
	// pull swaps source and destination (a sender trying to read).
	pull bool
	// relayOnly makes the remote shell relay through fd 3 as it does where
	// pidfd_getfd is not available.
	relayOnly bool
	// extraArgs are added to rsync's options (a sender asking for what the
	// receiver refuses).
	extraArgs []string
}

// VerifyResult is the outcome of a checksum verification pass.
type VerifyResult struct {
	// Differences lists itemized differences ("%i %n"); empty when the
	// target equals the source.
	Differences []string
	protocol.Result
}

// Equal reports whether the verification found no difference.
func (v VerifyResult) Equal() bool { return len(v.Differences) == 0 }

// Send runs one replication pass (full the first time, delta afterwards).
func Send(ctx context.Context, opts protocol.SendOptions) (protocol.Result, error) {
	return send(ctx, opts, testHooks{})
}

func send(ctx context.Context, opts protocol.SendOptions, hooks testHooks) (protocol.Result, error) {
	args := append(commonArgs(opts, !opts.DetectSparse || HasSparseFiles(opts.SourceDir)), "--inplace", "--no-whole-file", "--info=progress2,stats2")
	if opts.BlockSize > 0 {
		args = append(args, "--block-size="+strconv.Itoa(opts.BlockSize))
	}
	if opts.RsyncBwLimitKiB > 0 {
		args = append(args, "--bwlimit="+strconv.FormatInt(opts.RsyncBwLimitKiB, 10))
	}
	res, _, err := run(ctx, opts, hooks, args, opts.AllowVanished)
	return res, err
}

// VerifyPaths compares the listed entries (paths relative to SourceDir, "."
// for its root) of source and target as Verify does — whole-file checksums
// and all metadata, nothing written — without looking at anything else.
// An entry missing on the target is a difference; entries only on the
// target are not seen (compare manifests for those).
func VerifyPaths(ctx context.Context, opts protocol.SendOptions, paths []string) (VerifyResult, error) {
	list, err := os.CreateTemp("", "livemigrate-verify-")
	if err != nil {
		return VerifyResult{}, err
	}
	defer os.Remove(list.Name())
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(p)
		b.WriteByte(0)
	}
	if _, err := list.WriteString(b.String()); err != nil {
		_ = list.Close()
		return VerifyResult{}, err
	}
	if err := list.Close(); err != nil {
		return VerifyResult{}, err
	}
	var args []string
	for _, a := range commonArgs(opts, true) {
		if a != "--delete" { // needs recursion, which --files-from turns off
			args = append(args, a)
		}
	}
	args = append(args, "--checksum", "--dry-run", "--from0", "--files-from="+list.Name(), "--no-implied-dirs",
		"--out-format="+itemPrefix+"%i %n%L", "--info=stats2")
	res, items, err := run(ctx, opts, testHooks{}, args, false)
	return VerifyResult{Differences: items, Result: res}, err
}

// Repair rewrites every file whose content differs, comparing whole-file
// checksums instead of size and modification time. It is the fallback when a
// verification pass finds a difference (a file rewritten within the
// filesystem's timestamp granularity with the same size escapes rsync's
// quick check).
func Repair(ctx context.Context, opts protocol.SendOptions) (protocol.Result, error) {
	args := append(commonArgs(opts, true), "--checksum", "--inplace", "--no-whole-file", "--info=stats2")
	res, _, err := run(ctx, opts, testHooks{}, args, false)
	return res, err
}

// Verify compares source and target with whole-file checksums and all
// metadata (rsync -c --dry-run --itemize-changes); nothing is written.
func Verify(ctx context.Context, opts protocol.SendOptions) (VerifyResult, error) {
	return verify(ctx, opts, testHooks{})
}

func verify(ctx context.Context, opts protocol.SendOptions, hooks testHooks) (VerifyResult, error) {
	args := append(commonArgs(opts, true), "--checksum", "--dry-run", "--out-format="+itemPrefix+"%i %n%L", "--info=stats2")
	res, items, err := run(ctx, opts, hooks, args, false)
	return VerifyResult{Differences: items, Result: res}, err
}

// commonArgs are the options of every pass. sparse adds -S (holes are
// recreated on the target); see HasSparseFiles for why it is not always on.
func commonArgs(opts protocol.SendOptions, sparse bool) []string {
	timeout := opts.IOTimeout
	if timeout <= 0 {
		timeout = 300 * time.Second
	}
	// -a without -D: the receiver refuses devices and specials.
	archive := "-rlptgoHAX"
	if sparse {
		archive = "-rlptgoHAXS"
	}
	return []string{
		archive, "--delete", "--numeric-ids", "--no-h", "--modify-window=-1",
		"--timeout=" + strconv.Itoa(int(timeout.Seconds())),
		// The pump processes expect blocking descriptors: without it rsync
		// may leave the remote shell's stdout non-blocking and a busy
		// receiver side makes cat fail with EAGAIN.
		"--blocking-io",
		"-e", tunnelRsh,
	}
}

func run(ctx context.Context, opts protocol.SendOptions, hooks testHooks, args []string, allowVanished bool) (protocol.Result, []string, error) {
	start := time.Now()
	if opts.Dial == nil {
		return protocol.Result{}, nil, errors.New("no dialer")
	}
	st, err := os.Stat(opts.SourceDir)
	if err != nil {
		return protocol.Result{}, nil, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return protocol.Result{}, nil, fmt.Errorf("source %q is not a directory", opts.SourceDir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	remote, err := opts.Dial(ctx)
	if err != nil {
		return protocol.Result{}, nil, err
	}
	defer remote.Close()
	if err := protocol.WriteRequest(remote, protocol.Rsync); err != nil {
		return protocol.Result{}, nil, fmt.Errorf("sending request: %w", err)
	}

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return protocol.Result{}, nil, fmt.Errorf("socketpair: %w", err)
	}
	childEnd := os.NewFile(uintptr(fds[0]), "rsync-tunnel")
	parentFile := os.NewFile(uintptr(fds[1]), "agent-tunnel")
	local, err := net.FileConn(parentFile)
	_ = parentFile.Close()
	if err != nil {
		_ = childEnd.Close()
		return protocol.Result{}, nil, fmt.Errorf("socketpair conn: %w", err)
	}
	defer local.Close()

	bin := opts.RsyncPath
	if bin == "" {
		bin = "rsync"
	}
	spec := remoteDest
	if hooks.remote != "" {
		spec = hooks.remote
	}
	args = append(args[:len(args):len(args)], hooks.extraArgs...)
	if hooks.pull {
		args = append(args, spec, opts.SourceDir+"/")
	} else {
		args = append(args, opts.SourceDir+"/", spec)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// rsync calls getcwd() at start: run it from /, not from the agent's
	// working directory, which may be gone (paths given to it are absolute).
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C"}
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 64 * 1024}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = childEnd.Close()
		return protocol.Result{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		_ = childEnd.Close()
		return protocol.Result{}, nil, fmt.Errorf("starting rsync: %w", err)
	}
	_ = childEnd.Close()

	counter := opts.Counter
	if counter == nil {
		counter = &transport.Counter{}
	}
	sent0, recv0 := counter.Sent.Load(), counter.Received.Load()
	lim := transport.NewLimiter(opts.BandwidthLimit)
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		tunnel(ctx, remote, local, cmd.Process.Pid, !hooks.relayOnly, lim, counter, stop)
	}()

	var items []string
	var other []string
	statsCh := make(chan protocol.Stats, 1)
	go func() {
		st, o := scanOutput(stdout, opts.OnProgress, func(s string) { items = append(items, s) })
		other = o
		statsCh <- st
	}()
	stats := <-statsCh
	werr := cmd.Wait()
	// The receiver has finished (or failed); tear the tunnel down so that the
	// pump processes and goroutines end.
	_ = remote.Close()
	_ = local.Close()
	close(stop)
	wg.Wait()
	res := protocol.Result{
		Stats:        stats,
		WireSent:     counter.Sent.Load() - sent0,
		WireReceived: counter.Received.Load() - recv0,
		Duration:     time.Since(start),
	}
	if ctx.Err() != nil && werr != nil {
		return res, items, fmt.Errorf("rsync interrupted: %w", ctx.Err())
	}
	cerr := classify(werr, strings.Join(other, "\n")+"\n"+stderr.String(), allowVanished)
	var re *protocol.Error
	if errors.As(cerr, &re) {
		// The receiving rsync's diagnostics stay on its side; ask for them.
		if msg := protocol.FetchStatus(ctx, opts.Dial); msg != "" && msg != "ok" {
			re.Output = strings.TrimSpace(re.Output + "\nreceiver: " + msg)
			re.DiskFull = re.DiskFull || strings.Contains(msg, "No space left on device") || strings.Contains(msg, "Disk quota exceeded")
		}
	}
	return res, items, cerr
}

// HasSparseFiles reports whether a regular file under dir has a hole of at
// least one 4 KiB block (fewer blocks allocated than its size needs), or
// whether that cannot be told (an error: the answer is then true).
//
// A full pass (protocol.SendOptions.DetectSparse) only runs rsync with -S (--sparse)
// when it does: with -S the receiving rsync scans every byte it writes for
// runs of zeros, which costs it more CPU than the rest of a full copy (about
// 0.6 s per GiB here) and is useless for files without holes. A dense file copied without -S is the same
// file; a file with holes is always copied with -S, so it stays sparse on the
// target and cannot outgrow the target volume. The walk stops at the first
// sparse file and warms the inode cache for the rsync file list that follows.
func HasSparseFiles(dir string) bool {
	sparse := false
	errFound := errors.New("found")
	// fswalk never follows a directory the workload swaps for a symlink.
	err := fswalk.Walk(dir, func(_ string, st *unix.Stat_t) error {
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Blocks*512 < st.Size&^4095 {
			sparse = true
			return errFound
		}
		return nil
	})
	return sparse || err != nil
}

// tunnel bridges the remote shell of the rsync client (see tunnelRsh) to the
// TLS connection until either side ends. rsyncPid is the rsync client, the
// shell's parent.
//
// tunnel returns when both directions have ended; closing stop ends them.
func tunnel(ctx context.Context, remote, local net.Conn, rsyncPid int, direct bool, lim *rate.Limiter, counter *transport.Counter, stop <-chan struct{}) {
	out, in, err := takeShellStdio(local, rsyncPid, direct)
	if err != nil {
		// Relay through fd 3.
		if _, err := io.WriteString(local, "relay\n"); err != nil {
			return
		}
		out, in = local, local
	} else {
		defer out.Close()
		defer in.Close()
		go func() {
			<-stop
			_ = out.Close()
			_ = in.Close()
		}()
		if _, err := io.WriteString(local, "direct\n"); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if lim != nil {
			_ = transport.Pipe(ctx, remote, out, lim, &counter.Sent)
		} else {
			_ = pumpRecords(remote, out, &counter.Sent)
		}
		closeWrite(remote)
	}()
	_ = transport.Pipe(ctx, in, remote, nil, &counter.Received)
	// The remote side is done: rsync reads EOF (as when ssh exits) and the
	// shell exits (EOF on fd 3).
	closeWrite(in)
	if in != local {
		closeWrite(local)
	}
	<-done
}

// pumpRecords copies what rsync sends to the TLS connection in multiples of
// a full TLS record (16 KiB) while data streams. rsync writes 32 KiB plus a
// few header bytes at a time; written as they come, each write would become
// two full records and a tiny one, and every record costs a send, a receive,
// a pipe write and a wakeup of the receiving rsync. So when a read returned
// more than a record and not a whole number of them, the tail is held back
// and carried in front of the next read, which waits at most tailWait; if
// nothing comes by then the tail is sent alone. Short messages (the
// protocol's exchanges) are never held.
func pumpRecords(dst io.Writer, src net.Conn, n *atomic.Int64) error {
	const record, tailWait = 16 * 1024, 100 * time.Microsecond
	buf := make([]byte, 256*1024)
	k := 0 // bytes carried over
	for {
		if k > 0 {
			_ = src.SetReadDeadline(time.Now().Add(tailWait))
		} else {
			_ = src.SetReadDeadline(time.Time{})
		}
		m, rerr := src.Read(buf[k:])
		waited := k > 0 && errors.Is(rerr, os.ErrDeadlineExceeded)
		if waited {
			rerr = nil
		}
		k += m
		send := k
		if rerr == nil && !waited && k > record && k%record != 0 {
			send = k - k%record
		}
		if send > 0 {
			w, werr := dst.Write(buf[:send])
			n.Add(int64(w))
			if werr != nil {
				return werr
			}
			k = copy(buf, buf[send:k])
		}
		if rerr == io.EOF {
			if k > 0 {
				w, werr := dst.Write(buf[:k])
				n.Add(int64(w))
				return werr
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// takeShellStdio reads the remote shell's process id from local and returns
// copies of its standard output's source and standard input's destination:
// out carries what rsync sends, in what it receives. The shell must be a
// child of rsyncPid (the only other holders of fd 3 are rsync and the shell).
func takeShellStdio(local net.Conn, rsyncPid int, direct bool) (out, in net.Conn, err error) {
	line := make([]byte, 0, 16)
	b := make([]byte, 1)
	for {
		if _, err := local.Read(b); err != nil {
			return nil, nil, fmt.Errorf("reading the remote shell's pid: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		if len(line) == cap(line) {
			return nil, nil, errors.New("remote shell's pid: line too long")
		}
		line = append(line, b[0])
	}
	pid, err := strconv.Atoi(string(line))
	if err != nil || pid <= 0 {
		return nil, nil, fmt.Errorf("remote shell's pid %q", line)
	}
	if !direct {
		return nil, nil, errors.New("relay requested")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	// The pid cannot be reused while the shell waits for the answer; check
	// that it is rsync's child before touching its descriptors.
	if ppid, err := parentPid(pid); err != nil || ppid != rsyncPid {
		return nil, nil, fmt.Errorf("process %d is not the rsync client's remote shell", pid)
	}
	// Take both descriptors and check that they are sockets (rsync makes
	// socketpairs where it can) before net.FileConn makes them non-blocking:
	// the relay fallback needs them blocking.
	var fds [2]int
	for i := range fds {
		fd, err := unix.PidfdGetfd(pidfd, 4+i, 0) // close-on-exec is set
		if err != nil {
			for _, f := range fds[:i] {
				_ = unix.Close(f)
			}
			return nil, nil, fmt.Errorf("pidfd_getfd: %w", err)
		}
		fds[i] = fd
	}
	files := [2]*os.File{os.NewFile(uintptr(fds[0]), "rsync-shell-stdin"), os.NewFile(uintptr(fds[1]), "rsync-shell-stdout")}
	defer files[0].Close()
	defer files[1].Close()
	for _, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return nil, nil, errors.New("the remote shell's standard input or output is not a socket")
		}
	}
	if out, err = net.FileConn(files[0]); err != nil {
		return nil, nil, err
	}
	if in, err = net.FileConn(files[1]); err != nil {
		_ = out.Close()
		return nil, nil, err
	}
	return out, in, nil
}

// parentPid reads the parent process id from /proc/<pid>/stat.
func parentPid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, errors.New("malformed stat")
	}
	return strconv.Atoi(f[1])
}

func closeWrite(c io.Closer) {
	type cw interface{ CloseWrite() error }
	if w, ok := c.(cw); ok {
		_ = w.CloseWrite()
		return
	}
	_ = c.Close()
}
