package prober

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/klog/v2/ktesting"

	lmv1alpha1 "github.com/livemigrate/livemigrate/api/v1alpha1"
	"github.com/livemigrate/livemigrate/plugins/latency/prober/options"
)

// delayedEcho is a local TCP echo listener that holds every chunk for delay
// before echoing it, standing in for a WAN relay.
func delayedEcho(t *testing.T, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// closedAddress returns an address nothing listens on.
func closedAddress(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

type memWriter struct {
	mu       sync.Mutex
	name     string
	statuses []*lmv1alpha1.ClusterLatencyStatus
}

func (w *memWriter) WriteStatus(_ context.Context, name string, s *lmv1alpha1.ClusterLatencyStatus) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.name = name
	w.statuses = append(w.statuses, s)
	return nil
}

func config(peers, origins []Target, samples int32) *Config {
	c := &Config{ClusterName: "member1", ListenAddress: "127.0.0.1:0", Peers: peers, Origins: origins, Samples: &samples,
		Interval: &metav1.Duration{Duration: time.Second}, Timeout: &metav1.Duration{Duration: 500 * time.Millisecond}}
	SetDefaults(c)
	return c
}

func TestRoundMeasuresInjectedDelay(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	tests := []struct {
		name  string
		delay time.Duration
	}{
		{name: "no delay", delay: 0},
		{name: "20ms", delay: 20 * time.Millisecond},
		{name: "60ms", delay: 60 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := delayedEcho(t, tt.delay)
			w := &memWriter{}
			p := New(config([]Target{{Name: "member2", Address: addr}}, nil, 5), w, "test")
			defer p.close()
			if err := p.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if w.name != "member1" || len(w.statuses) != 1 || len(w.statuses[0].Peers) != 1 {
				t.Fatalf("unexpected write to %q: %+v", w.name, w.statuses)
			}
			m := w.statuses[0].Peers[0]
			if m.Samples != 5 || m.Failures != 0 || m.P50 == nil || m.P90 == nil {
				t.Fatalf("measurement %+v, want 5 samples, no failure", m)
			}
			if m.P50.Duration < tt.delay || m.P50.Duration > tt.delay+150*time.Millisecond {
				t.Errorf("p50 = %v, want about %v", m.P50.Duration, tt.delay)
			}
			if m.P90.Duration < m.P50.Duration {
				t.Errorf("p90 %v < p50 %v", m.P90.Duration, m.P50.Duration)
			}
		})
	}
}

func TestRoundKeepsConnectionAndRecovers(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	srv, err := ListenEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = srv.Serve(sctx); close(done) }()
	w := &memWriter{}
	p := New(config([]Target{{Name: "member2", Address: srv.Addr()}}, []Target{{Name: "eu-users", Address: closedAddress(t)}}, 3), w, "test")
	defer p.close()
	st := p.Round(ctx)
	first := p.targets[0].conn
	if st.Peers[0].Samples != 3 || first == nil {
		t.Fatalf("peer: %+v", st.Peers[0])
	}
	if !strings.HasPrefix(st.Summary, "member2=") || !strings.HasSuffix(st.Summary, " | eu-users=?") {
		t.Errorf("summary %q, want \"member2=<p50> | eu-users=?\"", st.Summary)
	}
	o := st.Origins[0]
	if o.Samples != 0 || o.Failures != 3 || o.P50 != nil || !strings.HasPrefix(o.LastError, "dial") {
		t.Errorf("origin down: %+v, want 3 dial failures and no percentiles", o)
	}
	p.Round(ctx)
	if p.targets[0].conn != first {
		t.Errorf("connection was not kept between rounds")
	}
	// The peer goes away: samples fail, then the next round redials.
	cancel()
	<-done
	st = p.Round(ctx)
	if st.Peers[0].Failures == 0 {
		t.Errorf("no failure after the echo server stopped: %+v", st.Peers[0])
	}
}

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in       []time.Duration
		p50, p90 time.Duration
	}{
		{in: ms(7), p50: 7 * time.Millisecond, p90: 7 * time.Millisecond},
		{in: ms(5, 1, 3, 2, 4), p50: 3 * time.Millisecond, p90: 5 * time.Millisecond},
		{in: ms(10, 1, 2, 3, 4, 5, 6, 7, 8, 9), p50: 5 * time.Millisecond, p90: 9 * time.Millisecond},
	}
	for _, tt := range tests {
		p50, p90 := summarize(tt.in)
		if p50 != tt.p50 || p90 != tt.p90 {
			t.Errorf("summarize(%v) = %v, %v; want %v, %v", tt.in, p50, p90, tt.p50, tt.p90)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "valid", yaml: "clusterName: member1\nlistenAddress: 127.0.0.1:7101\npeers:\n- {name: member2, address: 127.0.0.1:7202}\norigins:\n- {name: eu-users, address: 'localhost:7301'}\ninterval: 5s\nsamples: 3\n"},
		{name: "unknown field", yaml: "clusterName: member1\nlistenAddress: :1\npeers: [{name: m2, address: 'a:1'}]\nintervall: 5s\n", wantErr: "unknown field"},
		{name: "no targets", yaml: "clusterName: member1\nlistenAddress: :1\n", wantErr: "at least one peer or origin"},
		{name: "bad address", yaml: "clusterName: member1\nlistenAddress: :1\npeers: [{name: m2, address: nohost}]\n", wantErr: "peers[0].address"},
		{name: "self as peer", yaml: "clusterName: member1\nlistenAddress: :1\npeers: [{name: member1, address: 'a:1'}]\n", wantErr: "not its own peer"},
		{name: "duplicate", yaml: "clusterName: m1\nlistenAddress: :1\norigins: [{name: o, address: 'a:1'}, {name: o, address: 'b:1'}]\n", wantErr: "Duplicate"},
		{name: "samples", yaml: "clusterName: m1\nlistenAddress: :1\norigins: [{name: o, address: 'a:1'}]\nsamples: 0\n", wantErr: "samples"},
		{name: "interval", yaml: "clusterName: m1\nlistenAddress: :1\norigins: [{name: o, address: 'a:1'}]\ninterval: 1ms\n", wantErr: "interval"},
		{name: "bad cluster name", yaml: "clusterName: Member_1\nlistenAddress: :1\norigins: [{name: o, address: 'a:1'}]\n", wantErr: "clusterName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "prober.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Interval.Duration != 5*time.Second || *cfg.Samples != 3 || cfg.Timeout.Duration != DefaultTimeout {
				t.Errorf("defaults/values wrong: %+v", cfg)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*options.Options)
		wantErr string
	}{
		{name: "config required", mutate: func(*options.Options) {}, wantErr: "config"},
		{name: "ok", mutate: func(o *options.Options) { o.ConfigFile = "x.yaml" }},
		{name: "echo only needs address", mutate: func(o *options.Options) { o.EchoOnly = true }, wantErr: "listen-address"},
		{name: "echo only", mutate: func(o *options.Options) { o.EchoOnly = true; o.ListenAddress = "127.0.0.1:1" }},
		{name: "bad metrics address", mutate: func(o *options.Options) { o.ConfigFile = "x"; o.MetricsBindAddress = "nope" }, wantErr: "metrics-bind-address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options.NewOptions()
			tt.mutate(o)
			err := o.Validate().ToAggregate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDynamicStatusWriter(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := lmv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	existing := &lmv1alpha1.ClusterLatency{TypeMeta: metav1.TypeMeta{APIVersion: "livemigrate.io/v1alpha1", Kind: "ClusterLatency"},
		ObjectMeta: metav1.ObjectMeta{Name: "member1"}}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{ClusterLatencyResource: "ClusterLatencyList"}, existing)
	now := metav1.NewTime(time.Unix(1700000000, 0).UTC())
	status := &lmv1alpha1.ClusterLatencyStatus{LastProbeTime: &now, Origins: []lmv1alpha1.RTTMeasurement{{
		Name: "eu-users", P50: &metav1.Duration{Duration: 5 * time.Millisecond}, P90: &metav1.Duration{Duration: 6 * time.Millisecond},
		Samples: 5, ObservedAt: now,
	}}}
	ctx := context.Background()
	w := &DynamicStatusWriter{Client: client}
	if err := w.WriteStatus(ctx, "member1", status); err != nil {
		t.Fatal(err)
	}
	u, err := client.Resource(ClusterLatencyResource).Get(ctx, "member1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := &lmv1alpha1.ClusterLatency{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*status, got.Status); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if err := w.WriteStatus(ctx, "member9", status); err == nil || !strings.Contains(err.Error(), "create-if-missing") {
		t.Errorf("missing object: err = %v, want a hint", err)
	}
	w.CreateIfMissing = true
	if err := w.WriteStatus(ctx, "member9", status); err != nil {
		t.Errorf("create if missing: %v", err)
	}
}
