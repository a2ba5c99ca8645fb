package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// ErrBinaryMissing is wrapped by the error Start returns when a binary the
// lab needs has not been built.
var ErrBinaryMissing = errors.New("lab binary missing")

// thirdPartyBinaries are built by hack/lab-binaries.sh at pinned versions.
var thirdPartyBinaries = []string{
	"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"karmada-aggregated-apiserver", "karmada-controller-manager", "karmada-webhook", "karmada-scheduler",
	"kwok",
}

// RepoRoot returns the root of the repository this package was compiled
// from, or the directory holding go.mod above the working directory.
func RepoRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if isRepoRoot(root) {
			return root, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isRepoRoot(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("finding the repository root: no go.mod of github.com/livemigrate/livemigrate above %s", wd)
		}
	}
}

func isRepoRoot(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/livemigrate/livemigrate\n"))
}

// checkBinaries fails with the list of missing binaries and how to build them.
func checkBinaries(binDir string, names []string) error {
	var missing []string
	for _, n := range names {
		st, err := os.Stat(filepath.Join(binDir, n))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(binDir, n))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s: run make lab-binaries (hack/lab-binaries.sh)", ErrBinaryMissing, strings.Join(missing, ", "))
	}
	return nil
}

// buildProject builds the project's own binaries from the repository's
// source with go build, which does nothing when they are up to date. This
// keeps the lab from running a stale scheduler after an edit.
func buildProject(root, binDir string, pkgs []string) error {
	if len(pkgs) == 0 {
		return nil
	}
	args := append([]string{"build", "-o", binDir + string(filepath.Separator)}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building %s: %w\n%s", strings.Join(pkgs, ", "), err, out)
	}
	return nil
}

// moduleDir returns the directory of a module in the module cache, as the
// repository's go.mod resolves it.
func moduleDir(root, module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("locating module %s: %w: %s", module, err, ee.Stderr)
		}
		return "", fmt.Errorf("locating module %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("locating module %s: not in the module cache; run go mod download", module)
	}
	return dir, nil
}

// kwokModuleDir returns the kwok module's directory (for its stage
// definitions). kwok is not a dependency of the repository; hack/lab-binaries.sh
// downloads it into the module cache when it builds the kwok binary.
func kwokModuleDir() (string, error) {
	// Run outside the repository so that its go.mod is never touched.
	cmd := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+kwokVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating the kwok module %s: %w", kwokVersion, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("locating the kwok module %s: %w", kwokVersion, err)
	}
	if m.Dir == "" {
		return "", fmt.Errorf("locating the kwok module %s: %s", kwokVersion, m.Error)
	}
	return m.Dir, nil
}
