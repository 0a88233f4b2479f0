package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/trailstack/trailstack/testkit/fixture"
)

// layout is the paths of the shape's container log files.
func layout(shape, dir string) []string {
	var fs []string
	for _, c := range fixture.ShapeContainers(shape) {
		fs = append(fs, filepath.Join(dir, c.File()))
	}
	return fs
}

// writeLines appends the shape's lines [from, to) round-robin over its files, in the CRI
// format.
func writeLines(shape string, files []string, from, to int) error {
	ws := make([]*bufio.Writer, len(files))
	for i, f := range files {
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer fh.Close()
		ws[i] = bufio.NewWriterSize(fh, 1<<20)
	}
	base := time.Now().Add(-time.Hour)
	for i := from; i < to; i++ {
		ts := base.Add(time.Duration(i) * time.Microsecond).UTC().Format(time.RFC3339Nano)
		stream, line := fixture.ShapeLine(shape, i)
		fmt.Fprintf(ws[i%len(ws)], "%s %s F %s\n", ts, stream, line)
	}
	for _, w := range ws {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// pace writes total lines at rate per second, in slices of 10 ms.
func pace(shape string, files []string, rate, total int) {
	const slice = 10 * time.Millisecond
	per := rate / 100
	start := time.Now()
	for done, k := 0, 0; done < total; k++ {
		n := min(per, total-done)
		if err := writeLines(shape, files, done, done+n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		done += n
		time.Sleep(time.Until(start.Add(time.Duration(k+1) * slice)))
	}
}

// preloadCache writes each pod's object where the kubernetes filter's
// Kube_Meta_Preload_Cache_Dir looks for it: <namespace>_<pod>.meta.
func preloadCache(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range fixture.ShapeContainers("kube") {
		p := struct{ ns, name, hash string }{c.NS, c.Pod, c.Hash}
		app := strings.SplitN(p.name, "-", 2)[0]
		obj := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{
				"name": p.name, "namespace": p.ns, "uid": "4b0b3e2c-0d4a-4f52-9a57-" + p.hash + "00",
				"labels": map[string]string{
					"app": app, "pod-template-hash": p.hash, "app.kubernetes.io/name": app,
					"app.kubernetes.io/part-of": "bench", "team": "platform",
				},
				"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-27T06:00:00Z"},
				"ownerReferences": []map[string]any{{
					"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": app + "-" + p.hash,
					"uid": "9a0e6a1c-1111-4c4c-8d8d-" + p.hash + "00", "controller": true, "blockOwnerDeletion": true,
				}},
			},
			"spec": map[string]any{"nodeName": "bench-node", "containers": []map[string]any{{"name": "nginx", "image": "nginx:1.27.3"}}},
			"status": map[string]any{
				"hostIP": "10.128.0.7", "podIP": "10.4.0.5",
				"containerStatuses": []map[string]any{{
					"name": "nginx", "image": "docker.io/library/nginx:1.27.3",
					"imageID":     "docker.io/library/nginx@sha256:" + strings.Repeat("ab", 32),
					"containerID": "containerd://" + strings.Repeat("01", 32),
				}},
			},
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p.ns+"_"+p.name+".meta"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
