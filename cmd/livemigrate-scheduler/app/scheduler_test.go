package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestHelpShowsStockAndLivemigrateFlags(t *testing.T) {
	cmd := NewSchedulerCommand(context.Background())
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--kubeconfig", "--plugins", "--scheduler-name", "--enable-scheduler-estimator",
		"--leader-elect", "--livemigrate-config", "Capacity, Latency"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not show %q", want)
		}
	}
}

func TestBadConfigFailsBeforeConnecting(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"--livemigrate-config=/does/not/exist"}, wantErr: "livemigrate-config"},
		{args: []string{"--livemigrate-config=" + writeTemp(t, "apiVersion: config.livemigrate.io/v1alpha1\nkind: SchedulerPluginsConfiguration\ncapacity: {strategy: Random}\n")}, wantErr: "capacity.strategy"},
	}
	for _, tt := range tests {
		cmd := NewSchedulerCommand(context.Background())
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		// RunE directly: the stock PersistentPreRunE applies the logging
		// configuration, which a process may do only once.
		if err := cmd.ParseFlags(tt.args); err != nil {
			t.Fatal(err)
		}
		err := cmd.RunE(cmd, nil)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}
