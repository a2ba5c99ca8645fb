package migration

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/livemigrate/livemigrate/test/e2e/migration/scenario"
)

// logWriter sends kubectl livemigrate's output to the test log, line by line.
type logWriter struct {
	t   *testing.T
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

func newEnv(t *testing.T) (*scenario.Env, io.Writer) {
	t.Helper()
	out := &logWriter{t: t}
	env, err := scenario.FromLab(testLab, binDir(t), out, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return env, out
}

func report(t *testing.T, errs []error) {
	t.Helper()
	if len(errs) > 0 {
		t.Fatalf("%d invariant violations:\n%v", len(errs), errors.Join(errs...))
	}
}

// TestStatefulSetMovesToMember2 live-migrates a StatefulSet of the lab app
// with a local volume from member1 to member2 while it writes.
func TestStatefulSetMovesToMember2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, _ := newEnv(t)
	app, err := env.Deploy(ctx, "e2e-sts", "db", scenario.AppOptions{Cluster: "member1"})
	if err != nil {
		t.Fatal(err)
	}
	if app.Source != "member1" {
		t.Fatalf("placed in %s, want member1", app.Source)
	}
	// It has written for a while before it moves.
	if _, err := app.WaitRunning(ctx, "member1", 500); err != nil {
		t.Fatal(err)
	}
	obs, err := app.Move(ctx, scenario.MoveOptions{To: "member2", Name: "db-to-member2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl livemigrate move --wait took %s\n%s", obs.Duration.Round(time.Millisecond), scenario.Timeline(obs.Migration))
	res, errs := env.CheckSucceeded(ctx, app, obs)
	report(t, errs)
	t.Logf("restored from counter %d (the source's last log line: %d); %s", res.RestoredFrom, res.SourceLast, res.Verified)
}
