// Command labapp is the lab's stateful workload: a counter and a memory
// region it keeps dirtying, with every counter value appended to a log on its
// volume (see package labstate).
//
//	labapp run    --memory=64Mi --dirty-rate=4Mi --tick=10ms --log=/data/counter.log --state-dir=/run/labapp [--restore-from=pages-1.img [--restore-offset=N --restore-size=N]]
//	labapp verify --dump=pages-1.img --log=/data/counter.log
//
// On SIGUSR1 a running labapp dumps its own region to --dump-dir (a
// cooperative dump); the lab's node runtime instead reads the frozen
// process's memory through /proc/<pid>/mem, as CRIU does.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/livemigrate/livemigrate/test/labapp/labstate"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labapp run|verify [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "verify":
		err = verify(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "labapp:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	mem := fs.String("memory", "64Mi", "Size of the memory region the app keeps dirtying.")
	rate := fs.String("dirty-rate", "1Mi", "Bytes of memory dirtied per second (rounded to whole pages per tick).")
	tick := fs.Duration("tick", 10*time.Millisecond, "Time between counter increments.")
	logPath := fs.String("log", "/data/counter.log", "Counter log on the app's volume; empty keeps the state in memory only (a cache).")
	stateDir := fs.String("state-dir", "/run/labapp", "Where the app publishes its memory layout.")
	restoreFrom := fs.String("restore-from", "", "Start from this dumped region (pages-1.img) instead of from zero.")
	restoreOffset := fs.Int64("restore-offset", 0, "Where the dumped region starts in --restore-from (the pages member inside a checkpoint archive).")
	restoreSize := fs.Int64("restore-size", -1, "Length of the dumped region in --restore-from; -1 is the rest of the file.")
	dumpDir := fs.String("dump-dir", "", "Where SIGUSR1 writes a cooperative dump.")
	sync := fs.Bool("sync", false, "fsync the log after every value.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := resource.ParseQuantity(*mem)
	if err != nil {
		return fmt.Errorf("--memory: %w", err)
	}
	r, err := resource.ParseQuantity(*rate)
	if err != nil {
		return fmt.Errorf("--dirty-rate: %w", err)
	}
	if *tick <= 0 {
		return errors.New("--tick must be positive")
	}
	perTick := int(float64(r.Value())*tick.Seconds()/labstate.PageSize + 0.5)
	if perTick < 1 {
		perTick = 1
	}
	memBytes := m.Value() / labstate.PageSize * labstate.PageSize
	if pages := int(memBytes / labstate.PageSize); perTick > pages {
		perTick = pages
	}
	cfg := labstate.Config{MemoryBytes: memBytes, PagesPerTick: perTick, Tick: *tick, LogPath: *logPath, StateDir: *stateDir, Sync: *sync}
	var app *labstate.App
	if *restoreFrom != "" {
		app, err = labstate.RestoreAt(cfg, *restoreFrom, *restoreOffset, *restoreSize)
	} else {
		app, err = labstate.New(cfg)
	}
	if err != nil {
		return err
	}
	defer app.Close()
	fmt.Fprintf(os.Stderr, "labapp: pid %d counter %d memory %d pages-per-tick %d\n", os.Getpid(), app.Counter(), memBytes, perTick)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	errc := make(chan error, 1)
	go func() { errc <- app.Run(ctx) }()
	for {
		select {
		case err := <-errc:
			return err
		case <-usr1:
			if *dumpDir == "" {
				continue
			}
			// A cooperative dump is taken between ticks: stop, copy, go on.
			stop()
			if err := <-errc; err != nil {
				return err
			}
			if err := os.MkdirAll(*dumpDir, 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(*dumpDir, "pages-1.img"), app.Region(), 0o600); err != nil {
				return err
			}
			ctx, stop = signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() { errc <- app.Run(ctx) }()
		}
	}
}

func verify(args []string) error {
	fs := pflag.NewFlagSet("verify", pflag.ContinueOnError)
	dump := fs.String("dump", "", "A dumped region (pages-1.img).")
	logPath := fs.String("log", "", "The counter log.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	region, err := os.ReadFile(*dump)
	if err != nil {
		return err
	}
	n, err := labstate.Agree(region, *logPath)
	if err != nil {
		return err
	}
	fmt.Printf("ok: memory and log agree at counter %d\n", n)
	return nil
}
