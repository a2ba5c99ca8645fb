package labstate

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PageSize is the lab app's page size.
const PageSize = 4096

const magic = 0x6c6d2d6c61626170 // "lm-labap"

// Header offsets in the first page.
const (
	offMagic   = 0
	offCounter = 8
	offPending = 16
	offPages   = 24
	offPerTick = 32
)

// Config of a lab app.
type Config struct {
	// MemoryBytes is the size of the data pages.
	MemoryBytes int64 `json:"memoryBytes"`
	// PagesPerTick is how many pages a tick dirties.
	PagesPerTick int `json:"pagesPerTick"`
	// Tick is the time between ticks; 0 runs as fast as it can.
	Tick time.Duration `json:"tick"`
	// LogPath is the counter log on the volume; empty runs the app
	// memory only (a cache), and a restore then checks nothing on disk.
	LogPath string `json:"logPath"`
	// StateDir holds layout.json.
	StateDir string `json:"stateDir"`
	// Sync fsyncs the log after every append.
	Sync bool `json:"sync"`
}

// Layout is published in <StateDir>/layout.json.
type Layout struct {
	PID     int    `json:"pid"`
	Address uint64 `json:"address"`
	Length  int64  `json:"length"`
	Config  Config `json:"config"`
}

// LayoutFile is the name of the layout file in the state dir.
const LayoutFile = "layout.json"

// App is a running lab app.
type App struct {
	cfg    Config
	region []byte
	log    *os.File
}

func (c *Config) validate() error {
	if c.MemoryBytes < PageSize || c.MemoryBytes%PageSize != 0 {
		return fmt.Errorf("memory %d: want a positive multiple of %d", c.MemoryBytes, PageSize)
	}
	if c.PagesPerTick <= 0 || int64(c.PagesPerTick) > c.MemoryBytes/PageSize {
		return fmt.Errorf("pages per tick %d out of range", c.PagesPerTick)
	}
	if c.StateDir == "" {
		return errors.New("state dir is required")
	}
	return nil
}

// mapRegion maps the app's memory, populated up front: every page is
// written right away (zeroed by New, loaded from the dump by Restore), and
// faulting them in one by one during that copy costs more.
func mapRegion(size int64) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return b, nil
}

func (a *App) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&a.region[off])) }

// New starts a fresh app: counter 0, zero pages, empty (or new) log.
func New(cfg Config) (*App, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	region, err := mapRegion(PageSize + cfg.MemoryBytes)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, region: region}
	atomic.StoreUint64(a.word(offMagic), magic)
	atomic.StoreUint64(a.word(offPages), uint64(cfg.MemoryBytes/PageSize))
	atomic.StoreUint64(a.word(offPerTick), uint64(cfg.PagesPerTick))
	// Touch every page so the memory is really there.
	for off := PageSize; off < len(region); off += PageSize {
		region[off] = 0
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, a.publish()
}

// Restore starts an app from a dumped region (pages file) and finishes the
// tick that was in flight when it was dumped.
func Restore(cfg Config, pagesFile string) (*App, error) {
	return RestoreAt(cfg, pagesFile, 0, -1)
}

// RestoreAt is Restore from the size bytes at offset off of file: the
// pages member inside a checkpoint archive, read in place. A negative size
// means the rest of the file.
func RestoreAt(cfg Config, file string, off, size int64) (*App, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off < 0 || off > fi.Size() {
		return nil, fmt.Errorf("dump offset %d outside the %d bytes of %s", off, fi.Size(), file)
	}
	if size < 0 {
		size = fi.Size() - off
	}
	if size != PageSize+cfg.MemoryBytes {
		return nil, fmt.Errorf("dump is %d bytes, want %d", size, PageSize+cfg.MemoryBytes)
	}
	if off+size > fi.Size() {
		return nil, fmt.Errorf("dump of %d bytes at offset %d runs past the %d bytes of %s", size, off, fi.Size(), file)
	}
	region, err := mapRegion(size)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, off, size), region); err != nil {
		return nil, fmt.Errorf("load dump: %w", err)
	}
	a := &App{cfg: cfg, region: region}
	if atomic.LoadUint64(a.word(offMagic)) != magic {
		return nil, errors.New("dump has no lab app header")
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	c := atomic.LoadUint64(a.word(offCounter))
	p := atomic.LoadUint64(a.word(offPending))
	if cfg.LogPath == "" {
		// Memory only: finish the tick in flight.
		if p == c+1 {
			a.writePages(p)
			atomic.StoreUint64(a.word(offCounter), p)
			atomic.StoreUint64(a.word(offPending), 0)
		} else if p != 0 {
			return nil, fmt.Errorf("dump in flight at %d with counter %d", p, c)
		}
		return a, a.publish()
	}
	last, err := LastLogged(cfg.LogPath)
	if err != nil {
		return nil, err
	}
	switch {
	case p == 0 && last == c:
	case p == c+1 && last == c:
		// Frozen before the log append: redo the whole tick.
		if err := a.tick(p); err != nil {
			return nil, err
		}
	case p == c+1 && last == p:
		// Frozen after the log append: finish the memory part.
		a.writePages(p)
		atomic.StoreUint64(a.word(offCounter), p)
		atomic.StoreUint64(a.word(offPending), 0)
	default:
		return nil, fmt.Errorf("memory and disk disagree: memory counter %d (in flight %d), log ends at %d", c, p, last)
	}
	return a, a.publish()
}

func (a *App) open() error {
	if a.cfg.LogPath == "" {
		return nil // memory only
	}
	if err := os.MkdirAll(filepath.Dir(a.cfg.LogPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(a.cfg.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	a.log = f
	return nil
}

func (a *App) publish() error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return err
	}
	l := Layout{PID: os.Getpid(), Address: uint64(uintptr(unsafe.Pointer(&a.region[0]))), Length: int64(len(a.region)), Config: a.cfg}
	b, _ := json.Marshal(l)
	tmp := filepath.Join(a.cfg.StateDir, LayoutFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(a.cfg.StateDir, LayoutFile))
}

// Counter is the committed counter.
func (a *App) Counter() uint64 { return atomic.LoadUint64(a.word(offCounter)) }

// Region is the app's memory (header page and data pages).
func (a *App) Region() []byte { return a.region }

func (a *App) writePages(c uint64) {
	n := uint64(a.cfg.MemoryBytes / PageSize)
	k := uint64(a.cfg.PagesPerTick)
	for i := uint64(0); i < k; i++ {
		page := (c*k + i) % n
		base := PageSize + int(page)*PageSize
		words := unsafe.Slice((*uint64)(unsafe.Pointer(&a.region[base])), PageSize/8)
		for j := range words {
			words[j] = c
		}
	}
}

func (a *App) tick(c uint64) error {
	atomic.StoreUint64(a.word(offPending), c)
	a.writePages(c)
	if a.log == nil {
		atomic.StoreUint64(a.word(offCounter), c)
		atomic.StoreUint64(a.word(offPending), 0)
		return nil
	}
	if _, err := a.log.WriteString(strconv.FormatUint(c, 10) + "\n"); err != nil {
		return fmt.Errorf("append log: %w", err)
	}
	if a.cfg.Sync {
		if err := a.log.Sync(); err != nil {
			return err
		}
	}
	atomic.StoreUint64(a.word(offCounter), c)
	atomic.StoreUint64(a.word(offPending), 0)
	return nil
}

// Step runs one tick.
func (a *App) Step() error { return a.tick(a.Counter() + 1) }

// Run ticks until ctx ends.
func (a *App) Run(ctx context.Context) error {
	var t *time.Ticker
	if a.cfg.Tick > 0 {
		t = time.NewTicker(a.cfg.Tick)
		defer t.Stop()
	}
	for {
		if t != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		if err := a.Step(); err != nil {
			return err
		}
	}
}

// Close closes the log.
func (a *App) Close() error {
	if a.log != nil {
		return a.log.Close()
	}
	return nil
}

// ReadLayout reads a state dir's layout file.
func ReadLayout(stateDir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, LayoutFile))
	if err != nil {
		return nil, err
	}
	l := &Layout{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, err
	}
	return l, nil
}

// OpenProcessRegion returns a reader of the live region of the process the
// layout describes (root, or the same user with ptrace rights). It reads with
// process_vm_readv(2), which copies the target's pages straight into the
// caller's buffer, and falls back to /proc/<pid>/mem (which goes through a
// kernel bounce page, one page at a time) where that call is refused. Read it
// while the process is frozen for a consistent copy.
func OpenProcessRegion(l *Layout) (io.ReadCloser, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", l.PID))
	if err != nil {
		return nil, err
	}
	return &regionReader{f: f, pid: l.PID, off: int64(l.Address), end: int64(l.Address) + l.Length}, nil
}

type regionReader struct {
	f        *os.File
	pid      int
	off, end int64
	// procMem is set once process_vm_readv was refused.
	procMem bool
}

func (r *regionReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if int64(len(p)) > r.end-r.off {
		p = p[:r.end-r.off]
	}
	if !r.procMem {
		local := []unix.Iovec{{Base: &p[0]}}
		local[0].SetLen(len(p))
		n, err := unix.ProcessVMReadv(r.pid, local, []unix.RemoteIovec{{Base: uintptr(r.off), Len: len(p)}}, 0)
		switch {
		case err == nil && n > 0:
			r.off += int64(n)
			return n, nil
		case errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM):
			r.procMem = true
		case err != nil:
			return 0, fmt.Errorf("process_vm_readv pid %d at %#x: %w", r.pid, r.off, err)
		default:
			return 0, io.ErrUnexpectedEOF
		}
	}
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *regionReader) Close() error { return r.f.Close() }

// PeekCounter reads the committed counter of a live process.
func PeekCounter(l *Layout) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", l.PID))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], int64(l.Address)+offCounter); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// HeaderCounters reads the committed counter and the tick in flight (0 when
// none) from the first page of a lab app's region, e.g. as a dump holds it.
func HeaderCounters(header []byte) (counter, pending uint64, err error) {
	if len(header) < offPerTick+8 || binary.LittleEndian.Uint64(header[offMagic:]) != magic {
		return 0, 0, errors.New("no lab app header")
	}
	return binary.LittleEndian.Uint64(header[offCounter:]), binary.LittleEndian.Uint64(header[offPending:]), nil
}

// LastLogged returns the last value in the log, 0 for an empty or missing
// log.
func LastLogged(path string) (uint64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	start := size - 64
	if start < 0 {
		start = 0
	}
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return 0, err
	}
	s := strings.TrimRight(string(buf), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if !strings.HasSuffix(string(buf), "\n") {
		return 0, fmt.Errorf("log %s ends with a torn line %q", path, s)
	}
	return strconv.ParseUint(s, 10, 64)
}

// VerifyLog checks that the log is exactly 1, 2, ..., n and returns n.
func VerifyLog(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var want uint64 = 1
	for sc.Scan() {
		v, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			return want - 1, fmt.Errorf("log line %d: %w", want, err)
		}
		if v != want {
			if v < want {
				return want - 1, fmt.Errorf("log repeats: %d after %d", v, want-1)
			}
			return want - 1, fmt.Errorf("log skips: %d after %d", v, want-1)
		}
		want++
	}
	return want - 1, sc.Err()
}

// VerifyRegion checks a region (as dumped or live-and-frozen) against its
// own counter: every data page must hold the value of the last tick that
// wrote it (either value for a page of the tick in flight). It returns the
// committed counter and the tick in flight (0 when none).
func VerifyRegion(region []byte) (counter, pending uint64, err error) {
	if len(region) < 2*PageSize {
		return 0, 0, errors.New("region too small")
	}
	hdr := func(off int) uint64 { return binary.LittleEndian.Uint64(region[off:]) }
	if hdr(offMagic) != magic {
		return 0, 0, errors.New("no lab app header")
	}
	c, p, n, k := hdr(offCounter), hdr(offPending), hdr(offPages), hdr(offPerTick)
	if int64(len(region)) != int64(PageSize)+int64(n)*PageSize || k == 0 || k > n {
		return 0, 0, fmt.Errorf("header geometry %d pages x %d per tick does not fit %d bytes", n, k, len(region))
	}
	if p != 0 && p != c+1 {
		return c, p, fmt.Errorf("tick in flight %d after counter %d", p, c)
	}
	expect := make([]uint64, n)
	first := uint64(1)
	if back := n/k + 2; c > back {
		first = c - back
	}
	for v := first; v <= c; v++ {
		for i := uint64(0); i < k; i++ {
			expect[(v*k+i)%n] = v
		}
	}
	inFlight := map[uint64]bool{}
	if p != 0 {
		for i := uint64(0); i < k; i++ {
			inFlight[(p*k+i)%n] = true
		}
	}
	for page := uint64(0); page < n; page++ {
		base := PageSize + int(page)*PageSize
		for w := 0; w < PageSize; w += 8 {
			got := binary.LittleEndian.Uint64(region[base+w:])
			if got == expect[page] || (inFlight[page] && got == p) {
				continue
			}
			return c, p, fmt.Errorf("page %d word %d holds %d, want %d (counter %d)", page, w/8, got, expect[page], c)
		}
	}
	return c, p, nil
}

// Agree checks that a region and its log describe the same instant: the log
// is 1..n without gaps or repeats, and n is the region's counter (or its
// tick in flight, when the log append happened before the freeze).
func Agree(region []byte, logPath string) (uint64, error) {
	c, p, err := VerifyRegion(region)
	if err != nil {
		return 0, err
	}
	n, err := VerifyLog(logPath)
	if err != nil {
		return 0, err
	}
	if n != c && (p == 0 || n != p) {
		return 0, fmt.Errorf("memory counter %d (in flight %d) but log ends at %d", c, p, n)
	}
	return c, nil
}
