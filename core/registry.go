package core

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/trailstack/trailstack/metrics"
)

// Registry maps the opaque contexts Fluent Bit hands back on every flush to instances.
// IDs are never reused, so a stale context finds nothing rather than another instance.
type Registry struct {
	Kinds []Kind // the destinations the sink key chooses from

	mu     sync.RWMutex // guards byID, lastID, index and profile
	byID   map[uintptr]*Instance
	lastID uintptr
	index  int // instances created since the registry was last empty, for their names
	// profile is the CPU profile being written while instances live, when the environment
	// asks for one (TRAILSTACK_CPUPROFILE): the benchmarks in the real engine read it.
	profile *os.File
}

// New builds an instance from its keys and registers it, returning its ID.
func (r *Registry) New(get Getter) (uintptr, *Instance, error) {
	r.mu.Lock()
	if len(r.byID) == 0 {
		r.index = 0 // a hot reload starts naming from zero again, as Fluent Bit does
	}
	name := fmt.Sprintf("trailstack.%d", r.index)
	r.index++
	r.mu.Unlock()

	started.Do(func() {
		NewLogger(name, os.Stderr).Infof("trailstack %s (%s, Fluent Bit's Go output proxy %s)", metrics.Version, runtime.Version(), metrics.FluentBitABI)
	})
	in, err := NewInstance(name, get, r.Kinds)
	if err != nil {
		NewLogger(name, os.Stderr).Errorf("init failed: %v", err)
		return 0, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[uintptr]*Instance{}
	}
	if len(r.byID) == 0 {
		r.startProfile(in.log)
	}
	r.lastID++
	r.byID[r.lastID] = in
	return r.lastID, in, nil
}

// Get finds an instance by ID; nil if it has exited.
func (r *Registry) Get(id uintptr) *Instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// Remove unregisters an instance and returns it for closing.
func (r *Registry) Remove(id uintptr) *Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.byID[id]
	delete(r.byID, id)
	if len(r.byID) == 0 {
		r.stopProfile()
	}
	return in
}

// RemoveAll unregisters every instance and returns them for closing.
func (r *Registry) RemoveAll() []*Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []*Instance
	for id, in := range r.byID {
		all = append(all, in)
		delete(r.byID, id)
	}
	r.stopProfile()
	return all
}

// started logs the version once a process, with the first instance.
var started sync.Once
