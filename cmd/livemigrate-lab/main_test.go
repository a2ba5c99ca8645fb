package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livemigrate/livemigrate/test/lab"
)

// TestUpStatusDown runs the command the way a person does: up returns with
// the lab running in the background, kubectl reaches it through the printed
// kubeconfig, status reports it, and down leaves no process and no
// directory behind.
func TestUpStatusDown(t *testing.T) {
	root, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s missing: run make lab-binaries", kubectl)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "livemigrate-lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	config := filepath.Join(tmp, "lab.yaml")
	if err := os.WriteFile(config, []byte("members: 2\nnodesPerMember: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "state")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("livemigrate-lab %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	t.Cleanup(func() {
		// A failed test still stops the lab.
		_ = exec.Command(bin, "down", "--dir", dir).Run()
	})

	out := run("up", "--dir", dir, "--config", config)
	karmadaKubeconfig := filepath.Join(dir, "lab", "kubeconfig", "karmada.kubeconfig")
	for _, want := range []string{"The lab is up", karmadaKubeconfig, filepath.Join(dir, "lab", "lab.env")} {
		if !strings.Contains(out, want) {
			t.Errorf("up output does not mention %q:\n%s", want, out)
		}
	}
	// up has returned; the lab keeps running in the supervisor.
	raw, err := exec.Command(kubectl, "--kubeconfig", karmadaKubeconfig, "get", "clusters",
		"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get clusters: %v\n%s", err, raw)
	}
	if got, want := strings.TrimSpace(string(raw)), "member1=True member2=True"; got != want {
		t.Errorf("kubectl get clusters = %q, want %q", got, want)
	}
	env, err := os.ReadFile(filepath.Join(dir, "lab", "lab.env"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "export KUBECONFIG="+karmadaKubeconfig+"\n") {
		t.Errorf("env file does not export the Karmada kubeconfig:\n%s", env)
	}
	status := run("status", "--dir", dir)
	for _, want := range []string{"livemigrate-scheduler", "kube-apiserver-member2", "member1    Ready", "resident in total"} {
		if !strings.Contains(status, want) {
			t.Errorf("status does not mention %q:\n%s", want, status)
		}
	}

	rawState, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(rawState, &st); err != nil {
		t.Fatal(err)
	}
	run("down", "--dir", dir)
	if alive(st.SupervisorPID) {
		t.Errorf("supervisor %d still running after down", st.SupervisorPID)
	}
	for name, pid := range st.Components {
		if alive(pid) {
			t.Errorf("%s (PID %d) still running after down", name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after down (%v)", dir, err)
	}
}
