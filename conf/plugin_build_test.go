package conf

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// checkSO holds a shipped .so to what the image needs: the machine it says, stripped, and
// needing nothing beyond glibc (the Fluent Bit image has nothing else to offer).
func checkSO(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine || f.Type != elf.ET_DYN {
		t.Errorf("%s: %v %v, want a %v shared object", path, f.Machine, f.Type, machine)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped (-ldflags='-s -w')", path)
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if l != "libc.so.6" {
			t.Errorf("%s needs %s: only libc is sure to be in the image", path, l)
		}
	}
	syms, _ := f.DynamicSymbols()
	var names []string
	for _, s := range syms {
		names = append(names, s.Name)
	}
	for _, want := range []string{"FLBPluginRegister", "FLBPluginInit", "FLBPluginFlushCtx", "FLBPluginExitCtx"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s does not export %s", path, want)
		}
	}
}

func TestShippedPluginAMD64(t *testing.T) {
	checkSO(t, pluginSO(t), elf.EM_X86_64)
}

// The arm64 image's .so, cross-built as the Dockerfile builds it on an amd64 builder.
func TestShippedPluginARM64(t *testing.T) {
	so := os.Getenv("TRAILSTACK_SO_ARM64")
	if so == "" {
		cc, err := exec.LookPath("aarch64-linux-gnu-gcc")
		if err != nil {
			fixture.Need(t, "no aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)")
		}
		so = filepath.Join(t.TempDir(), "out_trailstack.so")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", so, "./plugin")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOARCH=arm64", "CC="+cc)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cross-building for arm64: %v\n%s", err, b)
		}
	}
	checkSO(t, so, elf.EM_AARCH64)
}

// The image's launcher, for both architectures as the Dockerfile builds it: a static,
// stripped executable (the Fluent Bit image has no Go and needs no more than it has).
func TestShippedLauncher(t *testing.T) {
	for goarch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		path := filepath.Join(t.TempDir(), "trailstack-launch")
		if goarch == "amd64" {
			path = launcher(t)
		} else {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", path, "./launch")
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH="+goarch)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", goarch, err, out)
			}
		}
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		libs, _ := f.ImportedLibraries()
		if f.Machine != machine || f.Type != elf.ET_EXEC || f.Section(".interp") != nil || len(libs) != 0 || f.Section(".symtab") != nil {
			t.Errorf("%s: %v %v, libraries %v: want a static, stripped %v executable", goarch, f.Machine, f.Type, libs, machine)
		}
		if fi, err := os.Stat(path); err == nil {
			t.Logf("%s: %.1f MiB", goarch, float64(fi.Size())/(1<<20))
		}
		f.Close()
	}
}
