package conf

// The real container runtime of the node harness: the Dockerfile built by podman's builder
// (buildah) as written, on a stand-in of the official Fluent Bit image, and every pod's
// container run by podman with runc from the rendered object. What a node gives a pod that
// podman cannot take from the object is translated in one place, podArgs.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/trailstack/trailstack/testkit/fixture"
)

var (
	runtimeOnce sync.Once
	runtimeErr  error
	runtimeConf string       // the containers.conf every podman call reads (CONTAINERS_CONF)
	podSeq      atomic.Int64 // names containers and images uniquely within this process
)

// needRuntime makes sure podman and runc are here and that the base image is in podman's
// storage, made once a process from the engine under test.
func needRuntime(t *testing.T) {
	t.Helper()
	for _, c := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(c); err != nil {
			fixture.Need(t, "%s not found (apt-get install podman runc)", c)
		}
	}
	script := os.Getenv("BASE_IMAGE_SH")
	if script == "" {
		script = filepath.Join(fixture.Root(), "..", "shared", "engine", "base-image.sh")
	}
	if _, err := os.Stat(script); err != nil {
		fixture.Need(t, "no base image script at %s (set BASE_IMAGE_SH)", script)
	}
	engine := fixture.Engine(t)
	runtimeOnce.Do(func() {
		// This machine's containers.conf is never touched: podman reads only this one. These
		// VMs need runc, the cgroupfs manager and no default ulimits (their hard
		// RLIMIT_NOFILE is below podman's default).
		dir, err := os.MkdirTemp("", "trailstack-podman-")
		if runtimeErr = err; err != nil {
			return
		}
		runtimeConf = filepath.Join(dir, "containers.conf")
		if runtimeErr = os.WriteFile(runtimeConf, []byte("[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n"), 0o644); runtimeErr != nil {
			return
		}
		cmd := exec.Command("bash", script, engine)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+runtimeConf)
		if out, err := cmd.CombinedOutput(); err != nil {
			runtimeErr = fmt.Errorf("%s: %v\n%s", script, err, out)
		}
	})
	if runtimeErr != nil {
		t.Fatal(runtimeErr)
	}
}

func podman(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+runtimeConf)
	return cmd
}

func podmanOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := podman(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildImage builds the Dockerfile as it is, with podman's builder. No golang image can be
// pulled here, so the build stage's outputs come from make (the .so and the launcher, built
// as the build stage builds them) through a build context named like the stage; the builder
// skips the stage, and every instruction of the final stage runs as written. The builder's
// CA bundle is the stand-in Papertrail's CA.
func (n *node) buildImage(so, launch, caFile string) {
	n.image = buildImage(n.t, n.dir, "localhost/trailstack-harness", so, launch, caFile)
}

// buildImage builds the image as buildImage above says, named repo:<pid>-<n>, in a build
// context under dir; the image is removed when the test ends.
func buildImage(t *testing.T, dir, repo, so, launch, caFile string) string {
	t.Helper()
	needRuntime(t)
	ctx := filepath.Join(dir, "build-stage")
	for src, dst := range map[string]string{so: "out/out_trailstack.so", launch: "out/trailstack-launch", caFile: "etc/ssl/certs/ca-certificates.crt"} {
		writeFile(t, filepath.Join(ctx, dst), readFile(t, src))
	}
	if err := os.Chmod(filepath.Join(ctx, "out/trailstack-launch"), 0o755); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("%s:%d-%d", repo, os.Getpid(), podSeq.Add(1))
	podmanOK(t, "build", "--pull=never", "--build-context", "build="+ctx, "-f", "../Dockerfile", "-t", image, "..")
	t.Cleanup(func() { _ = podman("rmi", "-f", image).Run() })
	return image
}

// podArgs is `podman run`'s command line for a container of the pod spec, taken from the
// rendered object; each line that is not the object's own says what it stands in for.
func (n *node) podArgs(name string, spec corev1.PodSpec, c corev1.Container) []string {
	args := []string{"run", "--name", name, "--pull=never", "--sig-proxy=false",
		// The pod's network is the node's here: the stand-ins listen on its loopback and
		// behind its delay lines, and the kubelet probes 127.0.0.1.
		"--network", "host", "--hostname", name,
		// Cluster DNS names kubernetes.default.svc; the Secret names Papertrail.
		"--add-host", "kubernetes.default.svc:" + strings.Split(kubeAPIAddr, ":")[0],
		"--add-host", papertrailHost + ":" + n.papertrailIP,
	}
	if sc := spec.SecurityContext; sc != nil && sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		args = append(args, "--security-opt", "seccomp=unconfined")
	} // RuntimeDefault: podman's default profile, as containerd's on a node.
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			args = append(args, "--user", strconv.FormatInt(*sc.RunAsUser, 10))
		}
		if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			// Kubernetes mounts no tmpfs of its own on a read-only root.
			args = append(args, "--read-only", "--read-only-tmpfs=false")
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			args = append(args, "--security-opt", "no-new-privileges")
		}
		if sc.Capabilities != nil {
			for _, d := range sc.Capabilities.Drop {
				args = append(args, "--cap-drop", string(d))
			}
			for _, a := range sc.Capabilities.Add {
				args = append(args, "--cap-add", string(a))
			}
		}
	}
	if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		args = append(args, "--memory", strconv.FormatInt(m.Value(), 10))
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		args = append(args, "--cpus", cpu.AsDec().String())
	}
	for _, e := range n.containerEnv(c) {
		args = append(args, "--env", e)
	}
	for _, m := range n.containerMounts(spec, c) {
		args = append(args, "--volume", m)
	}
	// Kubernetes: command replaces the image's ENTRYPOINT and then ignores its CMD; args
	// replace the CMD.
	if len(c.Command) > 0 {
		args = append(args, "--entrypoint", jsonList(c.Command))
	}
	args = append(args, n.image)
	if len(c.Command) > 0 && len(c.Args) == 0 {
		return args
	}
	return append(args, c.Args...)
}

// containerEnv is the container's environment as the kubelet builds it.
func (n *node) containerEnv(c corev1.Container) []string {
	t := n.t
	env := []string{
		// The kubelet's service variables, and GKE's metadata server (the stand-in's
		// address in place of 169.254.169.254).
		"KUBERNETES_SERVICE_HOST=" + strings.Split(kubeAPIAddr, ":")[0], "KUBERNETES_SERVICE_PORT=443",
		"GCE_METADATA_HOST=" + n.metadata,
	}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			v = nodeName // podman has no fieldRef
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == n.r.secret.Name:
			b, ok := n.r.secret.Data[e.ValueFrom.SecretKeyRef.Key]
			if !ok {
				t.Fatalf("env %s: the Secret has no %s", e.Name, e.ValueFrom.SecretKeyRef.Key)
			}
			v = string(b)
		default:
			t.Fatalf("env %s: a source the harness does not know", e.Name)
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

// containerMounts are the container's volumes as the kubelet mounts them: hostPaths in the
// node's directory, the ConfigMap's keys as files, and the service account's token, CA and
// namespace.
func (n *node) containerMounts(spec corev1.PodSpec, c corev1.Container) []string {
	t := n.t
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s has no volume", m.Name)
		}
		var src string
		switch {
		case v.HostPath != nil:
			src = n.hostPath(v.HostPath.Path)
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != n.r.cm.Name {
				t.Fatalf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
			}
			src = filepath.Join(n.dir, "volumes", v.Name)
			for k, d := range n.r.cm.Data {
				writeFile(t, filepath.Join(src, k), []byte(d))
			}
		case v.EmptyDir != nil:
			src = filepath.Join(n.dir, "volumes", v.Name)
			if err := os.MkdirAll(src, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: a kind the harness does not mount", v.Name)
		}
		opt := "rw"
		if m.ReadOnly || v.ConfigMap != nil { // the kubelet mounts a ConfigMap read-only
			opt = "ro"
		}
		mounts = append(mounts, src+":"+m.MountPath+":"+opt)
	}
	sa := filepath.Join(n.dir, "volumes", "serviceaccount")
	writeFile(t, filepath.Join(sa, "token"), []byte("harness-token"))
	writeFile(t, filepath.Join(sa, "ca.crt"), readFile(t, n.kubeCA))
	writeFile(t, filepath.Join(sa, "namespace"), []byte(n.r.ds.Namespace))
	return append(mounts, sa+":/var/run/secrets/kubernetes.io/serviceaccount:ro")
}

func jsonList(l []string) string {
	b, _ := json.Marshal(l)
	return string(b)
}
