package core

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// repairFiles appends lost lines, as the runtime wrote them, to files that a tail input of
// their own reads (repair_dir): the engine makes them into records again, with the same
// parser, filter and metadata, under a tag that routes them to the one output that missed
// them. A file is named as the container's link, so its records get the pod's metadata.
type repairFiles struct {
	pending map[string]*repairBatch // by repair file: what this pass adds
	gz      map[string][]byte       // rotated logs the kubelet compressed, read once a pass
}

// unzipped is a compressed rotated log's bytes (the kubelet keeps them at 10 MiB).
func (r *repairFiles) unzipped(path string) ([]byte, error) {
	if b, ok := r.gz[path]; ok {
		return b, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(zr, 1<<30))
	if err != nil {
		return nil, err
	}
	if r.gz == nil {
		r.gz = map[string][]byte{}
	}
	r.gz[path] = b
	return b, nil
}

type repairBatch struct {
	b      []byte
	causes map[string]int // its records by the cause of their loss
}

// add reads a record's lines from the log and queues them for its repair file.
func (r *repairFiles) add(repairPath, logPath, cause string, parts []lineSpan, last lineSpan) error {
	var src io.ReaderAt
	if strings.HasSuffix(logPath, ".gz") {
		b, err := r.unzipped(logPath)
		if err != nil {
			return err
		}
		src = bytes.NewReader(b)
	} else {
		fh, err := os.Open(logPath)
		if err != nil {
			return err
		}
		defer fh.Close()
		src = fh
	}
	if r.pending == nil {
		r.pending = map[string]*repairBatch{}
	}
	p := r.pending[repairPath]
	if p == nil {
		p = &repairBatch{causes: map[string]int{}}
		r.pending[repairPath] = p
	}
	b := p.b
	for _, sp := range append(parts, last) {
		n := int(sp.to - sp.from)
		b = append(b, make([]byte, n)...)
		if got, err := src.ReadAt(b[len(b)-n:], sp.from); got != n {
			return fmt.Errorf("%s bytes %d-%d: %v", logPath, sp.from, sp.to, err)
		}
	}
	p.b = b
	p.causes[cause]++
	return nil
}

// flush writes what the pass queued; the records of a file it cannot write are lost after
// all, and go to lost by their causes.
func (r *repairFiles) flush(log *Logger, lost func(cause string, n int)) {
	for path, p := range r.pending {
		if err := appendFile(path, p.b); err != nil {
			log.Errorf("account_logs: repair lines not written to %s, counted lost: %v", path, err)
			for c, n := range p.causes {
				lost(c, n)
			}
		}
	}
	clear(r.pending)
	clear(r.gz)
}

func appendFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
