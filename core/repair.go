package core

import (
	"fmt"
	"os"
	"path/filepath"
)

// repairFiles appends lost lines, as the runtime wrote them, to files that a tail input of
// their own reads (repair_dir): the engine makes them into records again, with the same
// parser, filter and metadata, under a tag that routes them to the one output that missed
// them. A file is named as the container's link, so its records get the pod's metadata.
type repairFiles struct {
	pending map[string]*repairBatch // by repair file: what this pass adds
}

type repairBatch struct {
	b      []byte
	causes map[string]int // its records by the cause of their loss
}

// add reads a record's lines from the log and queues them for its repair file.
func (r *repairFiles) add(repairPath, logPath, cause string, parts []lineSpan, last lineSpan) error {
	fh, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer fh.Close()
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
		if got, err := fh.ReadAt(b[len(b)-n:], sp.from); got != n {
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
